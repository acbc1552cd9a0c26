//! `checkpoint` and `restore`: not supported. The flags engines send are
//! accepted, and the error says so plainly.

use crate::cli::PassthroughArgs;
use crate::report::Globals;

pub fn checkpoint(_g: &Globals, _a: PassthroughArgs) -> anyhow::Result<i32> {
    anyhow::bail!("checkpoint is not supported by nk-runtime (no CRIU integration); use runc for checkpoint/restore")
}

pub fn restore(_g: &Globals, _a: PassthroughArgs) -> anyhow::Result<i32> {
    anyhow::bail!("restore is not supported by nk-runtime (no CRIU integration); use runc for checkpoint/restore")
}
