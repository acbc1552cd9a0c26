//! `oci-spec` validates one field (process.execCPUAffinity) with the `regex`
//! crate, which brings ~600 KiB of code into every runtime binary: a fifth of
//! nk-runtime's text, faulted into memory on each container start. This crate
//! takes `regex`'s place (through `[patch.crates-io]`) and serves the same API
//! from `regex-lite`, the small engine by the same authors. The patterns used
//! (`^(\d+(-\d+)?)(,\d+(-\d+)?)*$`) need nothing regex-lite lacks.

pub use regex_lite::*;
