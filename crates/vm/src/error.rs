//! Errors of VM mode, each naming the file, program or value at fault and,
//! where there is one, the fix.

use std::path::PathBuf;

/// Result alias of the `vm` crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong on the host side of VM mode.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// QEMU is not installed (or NK_QEMU names nothing runnable).
    #[error("VM mode needs {program}, which was not found{where_}: install it with `apt-get install qemu-system-x86`")]
    QemuMissing { program: String, where_: String },

    /// The guest kernel or its modules are missing.
    #[error("VM mode needs a guest kernel: {what}; install one with `apt-get install linux-image-amd64`")]
    KernelMissing { what: String },

    /// The static guest agent binary was not found or is not usable.
    #[error("VM mode needs the static guest agent nk-agent: {what}")]
    Agent { what: String },

    /// A file operation failed.
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A system call failed.
    #[error("{op}: {cause}")]
    Sys { op: String, cause: nix::Error },

    /// QEMU exited when it should not have.
    #[error("the VM exited unexpectedly ({status}){detail}")]
    VmExited { status: String, detail: String },

    /// The guest did not answer in time.
    #[error("{what} did not happen within {secs} s{detail}")]
    Timeout {
        what: String,
        secs: u64,
        detail: String,
    },

    /// The agent broke the protocol, or the channel closed.
    #[error("guest agent channel: {0}")]
    Protocol(String),

    /// The agent answered a request with an error.
    #[error("{0}")]
    Remote(String),

    /// A container-level error reported by the monitor.
    #[error("{0}")]
    Msg(String),

    /// The VM ended before its container did (the reason the monitor
    /// recorded); `run` exits with [`crate::monitor::VM_FAILED`].
    #[error("{0}")]
    VmEnded(String),

    /// A step the library takes for both backends (state, cgroup, hooks...).
    #[error(transparent)]
    Sandbox(#[from] sandbox::Error),
}

impl Error {
    /// Wrap an io::Error with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, cause: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            cause,
        }
    }

    /// Wrap a failed system call.
    pub fn sys(op: impl Into<String>, cause: nix::Error) -> Error {
        Error::Sys {
            op: op.into(),
            cause,
        }
    }
}
