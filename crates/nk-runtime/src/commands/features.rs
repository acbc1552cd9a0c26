//! `features`: the OCI runtime features document (runtime-spec
//! features.md), built by `sandbox::features` from the runtime's own tables,
//! with the annotations VM mode reads (`vm::backend::annotations`).

use crate::report::Globals;

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(_g: &Globals) -> anyhow::Result<i32> {
    let mut f = sandbox::features::features();
    let mut a = f.annotations().clone().unwrap_or_default();
    a.extend(
        vm::backend::annotations()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    f.set_annotations(Some(a));
    let f = sandbox::features::to_json(&f);
    println!("{}", serde_json::to_string_pretty(&f)?);
    Ok(0)
}
