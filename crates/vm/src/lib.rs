//! VM mode: one QEMU microVM per container, driven through a guest agent.
//!
//! * [`backend`] is VM mode behind the runc verbs (create, start, exec...);
//! * [`cache`] is the cache directory, its lock and the accelerator record;
//! * [`image`] extracts the guest kernel and builds the initramfs (cached);
//! * [`qemu`] launches the microVM and picks the accelerator;
//! * [`channel`] is the host end of the agent protocol (`vm-protocol`);
//! * [`harness`] boots a guest for tests and runs programs in it;
//! * [`fds`] checks `--preserve-fds` descriptors: which may pass, and which way;
//! * [`virtiofs`] chooses the share's filesystem and runs virtiofsd;
//! * [`net`] brings the engine's network namespace into the guest (tap, tc redirect);
//! * [`monitor`] is the per-container host process of VM mode, and its client;
//! * [`pod`] runs a pod's later containers in the VM of its first;
//! * [`template`] starts VMs from a snapshot of a booted guest, through [`qmp`];
//! * [`criu_kit`] assembles what the guest needs to checkpoint a container with CRIU.

pub mod backend;
pub mod cache;
pub mod channel;
pub mod checkpoint;
pub mod cpio;
pub mod criu_kit;
pub mod dns;
pub mod error;
pub mod fds;
pub mod harness;
pub mod image;
pub mod modules;
pub mod monitor;
pub mod net;
pub mod pod;
pub mod qemu;
pub mod qmp;
pub mod template;
pub mod virtiofs;

pub use error::{Error, Result};
