//! The host↔agent protocol of VM mode: message types and framing, shared by
//! the `vm` crate (host) and the `agent` crate (guest).
