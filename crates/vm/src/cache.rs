//! The cache directory (`/var/lib/nano-sandbox/vm`, or `NK_VM_CACHE`):
//! where it is, its lock, and the accelerator probe's answer kept there.
//! The image builder and the QEMU launcher both depend on this module, and
//! neither on the other's cache handling.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The default cache directory.
pub const DEFAULT_CACHE: &str = "/var/lib/nano-sandbox/vm";

/// The cache directory (`NK_VM_CACHE` overrides it).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("NK_VM_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE))
}

/// An exclusive lock on the cache directory, so parallel builds do not
/// duplicate work (each file is still written atomically).
pub(crate) struct CacheLock {
    _f: std::fs::File,
}

impl CacheLock {
    pub(crate) fn take(dir: &Path) -> Result<CacheLock> {
        Self::take_named(dir, ".lock")
    }

    /// A lock of its own (file `name` in `dir`), for work that must not
    /// hold up the rest of the cache (a template boot).
    pub(crate) fn take_named(dir: &Path, name: &str) -> Result<CacheLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let p = dir.join(name);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::io("open", &p, e))?;
        // SAFETY: flock on a descriptor we own.
        while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(Error::io("lock", &p, e));
            }
        }
        Ok(CacheLock { _f: f })
    }
}

/// The accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The cached answer of the KVM probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccelRecord {
    pub accel: Accel,
    /// The guest kernel it was probed with.
    pub kernel: String,
    /// Why (probe result, or why no probe was needed).
    pub reason: String,
}

/// The cached probe result, if any.
pub fn cached_accel(cache: &Path) -> Option<AccelRecord> {
    let raw = std::fs::read(cache.join("accel.json")).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Keep the probe's answer (best effort: without it the probe runs again).
pub fn save_accel(cache: &Path, rec: &AccelRecord) {
    let _ = std::fs::create_dir_all(cache);
    let _ = sandbox::files::replace(
        &cache.join("accel.json"),
        &serde_json::to_vec_pretty(rec).unwrap_or_default(),
        0o644,
    );
}
