//! Processes: how the container's first process (and each `exec`) is born,
//! talks to its parent, and is waited for.
//!
//! * `sync`: the parent/child channel (a SOCK_SEQPACKET pair, JSON messages,
//!   descriptors by SCM_RIGHTS);
//! * `messages`: what travels on it (the init request and the replies);
//! * `clone`: clone3 into new namespaces, then exec of a sealed copy of the
//!   runtime as `nk-runtime init`;
//! * `init`: the child's steps inside the namespaces, up to the exec barrier
//!   and the final execve;
//! * `userns`: a user namespace of given mappings (idmapped mounts);
//! * `wait`: foreground waiting with a pidfd, signal forwarding, pty bridging.

pub mod clone;
pub mod init;
pub mod messages;
pub mod sync;
pub mod userns;
pub mod wait;

pub use messages::InitRequest;
