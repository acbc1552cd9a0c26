//! nano-sandbox's container library, organised by kernel mechanism.
//!
//! * [`spec`] loads and validates config.json;
//! * [`state`] keeps the per-container state directory, and [`files`] is how
//!   every file the runtime owns is written (no predictable or followed name);
//! * [`container`] holds the lifecycle verbs (create, start, kill, delete, exec);
//! * [`process`] creates processes in namespaces and talks to them;
//! * [`linux`] has one module per kernel mechanism (namespaces, mounts,
//!   devices, capabilities, rlimits, seccomp, console, hooks, sysctl, users);
//! * [`criu`] drives CRIU for checkpoint and restore;
//! * [`cgroups`] manages v1, v2 and hybrid cgroups behind one trait;
//! * [`explain`] narrates every step, and [`logging`] tags lines by role;
//! * [`features`] is the OCI features document, read off the tables above.
//!
//! The library never prints on its own: it reports to the sinks the binary
//! installs, and returns typed errors.

pub mod cgroups;
pub mod container;
pub mod criu;
pub mod error;
pub mod explain;
pub mod features;
pub mod files;
pub mod linux;
pub mod logging;
pub mod process;
pub mod spec;
pub mod state;
pub mod time;

pub use error::{Error, Result};

/// The runtime-spec version this runtime implements (state output, hook
/// and seccomp-agent state, `features`): below every module, as all of
/// them may report it.
pub const OCI_VERSION: &str = "1.2.0";
