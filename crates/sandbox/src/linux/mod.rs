//! Linux mechanisms, one module each. These are the kernel-facing pieces the
//! container's init and exec processes are built from.

pub mod capabilities;
pub mod console;
pub mod devices;
pub mod fs;
pub mod hooks;
pub mod hostmounts;
pub mod lsm;
pub mod mountinfo;
pub mod mounts;
pub mod namespaces;
pub mod netdevices;
pub mod netlink;
pub mod procattr;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod signals;
pub mod syscall;
pub mod sysctl;
pub mod user;
pub mod userns;
