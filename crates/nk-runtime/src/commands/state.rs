//! `state`: the OCI state document.

use crate::cli::IdArg;
use crate::report::Globals;

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: IdArg) -> anyhow::Result<i32> {
    let rt = g.runtime();
    let (st, status) = rt.load(&a.id)?;
    println!("{}", serde_json::to_string_pretty(&st.oci(status))?);
    Ok(0)
}
