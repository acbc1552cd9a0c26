//! Typed errors for the library. Every variant carries the file, field or value
//! that failed, so the CLI can print one line that tells the user what to fix.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle directory or its config.json is missing or unreadable.
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },

    /// config.json parsed but a field holds a value we cannot honour.
    #[error("{file}: field {field}: {reason}")]
    Config {
        file: PathBuf,
        field: String,
        reason: String,
    },

    /// No container of this id in the state root.
    #[error("container \"{0}\" does not exist")]
    NotExist(String),

    /// The id is already taken.
    #[error("container with id \"{0}\" already exists")]
    Exists(String),

    /// The id would escape the state directory or is empty.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },

    /// An operation that needs a given status found another.
    #[error("{what}")]
    BadStatus {
        id: String,
        status: String,
        what: String,
    },

    /// A container's state.json is there but is not a record (empty after
    /// a power loss, or damaged): `delete --force` removes it.
    #[error("{path}: corrupt state file: {reason} (delete --force removes it)")]
    CorruptState { path: PathBuf, reason: String },

    /// A filesystem operation failed on a path.
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A system call failed.
    #[error("{op}: {cause}")]
    Sys { op: String, cause: nix::Error },

    /// A hook exited non-zero, was killed or timed out.
    #[error("{kind} hook {path}: {reason}")]
    Hook {
        kind: &'static str,
        path: String,
        reason: String,
    },

    /// The kernel or host lacks a feature the config asks for.
    #[error("{0} (not supported on this host)")]
    Unsupported(String),

    /// The container process reported an error during setup.
    #[error("{0}")]
    Child(String),

    /// Talking to CRIU (checkpoint, restore) failed: a
    /// `criu::CriuError`, boxed so that this base layer does not name the
    /// CRIU client above it (the `From` is in `criu/`).
    #[error(transparent)]
    Criu(Box<dyn std::error::Error + Send + Sync>),

    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Msg(String),
}

/// One field of config.json this runtime cannot honour: which field, and a
/// reason that names the value and says what to do. What every check of
/// `spec::validate` returns; [`FieldError::in_file`] makes it an
/// [`Error::Config`] naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {reason}")]
pub struct FieldError {
    /// The field's path in the document (`linux.namespaces[2].path`).
    pub field: String,
    pub reason: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An error on `field` (for checks that build both as Strings).
    pub fn of(field: String, reason: String) -> Self {
        FieldError { field, reason }
    }

    /// The same error, its field below `prefix` (`linux.resources` and
    /// `memory.limit` give `linux.resources.memory.limit`).
    pub fn under(self, prefix: &str) -> Self {
        FieldError {
            field: format!("{prefix}.{}", self.field),
            reason: self.reason,
        }
    }

    /// The error in config file `file`.
    pub fn in_file(self, file: impl Into<PathBuf>) -> Error {
        Error::config(file, self.field, self.reason)
    }
}

/// What a check of one part of config.json returns.
pub type Checked = std::result::Result<(), FieldError>;

impl Error {
    /// Wrap an io::Error with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            cause: source,
        }
    }

    /// Wrap a nix error with a description of the call.
    pub fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            op: op.into(),
            cause: source,
        }
    }

    /// A config error on a field of a file.
    pub fn config(
        file: impl Into<PathBuf>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Config {
            file: file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A plain message.
    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }
}

/// Attach context to nix results in one call.
pub trait SysContext<T> {
    /// Name the failed call (with its arguments) when the result is an error.
    fn sys(self, op: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn sys(self, op: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::sys(op(), e))
    }
}

/// Attach context to io results in one call.
pub trait IoContext<T> {
    /// Name the failed operation and its path when the result is an error.
    fn io(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
