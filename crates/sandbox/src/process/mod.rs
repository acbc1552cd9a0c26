//! Processes: how the container's first process (and each `exec`) is born,
//! talks to its parent, and is waited for.
//!
//! * `sync`: the parent/child channel (a SOCK_SEQPACKET pair, JSON messages,
//!   descriptors by SCM_RIGHTS);
//! * `clone`: clone3 into new namespaces, then exec of a sealed copy of the
//!   runtime as `nk-runtime init`;
//! * `init`: the child's steps inside the namespaces, up to the exec barrier
//!   and the final execve;
//! * `wait`: foreground waiting with a pidfd, signal forwarding, pty bridging.

pub mod clone;
pub mod init;
pub mod sync;
pub mod wait;

pub use init::InitRequest;
