//! `start`: open the exec barrier; with --attach, wait and return the exit status.

use crate::backend::Backend;
use crate::cli::StartArgs;
use crate::report::Globals;

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: StartArgs) -> anyhow::Result<i32> {
    let (backend, record) = Backend::loaded(g, &a.id);
    backend.start(&a.id, a.attach, record)
}
