//! `checkpoint` and `restore`: not supported. nk-runtime has no CRIU
//! integration, so both refuse plainly and touch nothing. Every flag runc
//! takes for them (including Go-style `-no-subreaper`, which engines send to
//! restore) is accepted, so the answer is this message, not a usage error.

use crate::cli::PassthroughArgs;
use crate::report::Globals;

pub fn checkpoint(_g: &Globals, _a: PassthroughArgs) -> anyhow::Result<i32> {
    anyhow::bail!(
        "checkpoint is not supported by nk-runtime: it has no CRIU integration \
         (the container was not touched; `features` reports org.opencontainers.runc.checkpoint.enabled=false)"
    )
}

pub fn restore(_g: &Globals, _a: PassthroughArgs) -> anyhow::Result<i32> {
    anyhow::bail!(
        "restore is not supported by nk-runtime: it has no CRIU integration \
         (nothing was created; `features` reports org.opencontainers.runc.checkpoint.enabled=false)"
    )
}
