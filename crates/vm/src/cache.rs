//! The cache directory (`/var/lib/nano-sandbox/vm`, or `NK_VM_CACHE`):
//! where it is, its lock, the accelerator probe's answer kept there, and
//! its pruning.
//!
//! Pruning: every agent build gets an initramfs of its own, and every
//! shape a template, so the cache would grow without bound. An entry is
//! touched whenever it is used (its access time: the modification time
//! is part of a template's key); when a new initramfs or
//! template is built, entries of the same kind that are not the new one
//! and were not used for [`KEEP_UNUSED`] are removed. A binary that is
//! still used keeps its files however old it is, and nothing that a
//! create in progress just picked up goes.
//! The image builder and the QEMU launcher both depend on this module, and
//! neither on the other's cache handling.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long an entry that is not the current one stays after its last use.
pub const KEEP_UNUSED: Duration = Duration::from_secs(24 * 3600);

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
        loop {
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
            // Pruning removes the lock of what it removes while holding
            // it: a lock file no longer at its path locks nothing.
            if same_file(&f, &p) {
                return Ok(CacheLock { _f: f });
            }
        }
    }

    /// The lock `name` in `dir` if no one holds it, else None.
    pub(crate) fn try_named(dir: &Path, name: &str) -> Option<CacheLock> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(name))
            .ok()?;
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        (r == 0 && same_file(&f, &dir.join(name))).then_some(CacheLock { _f: f })
    }
}

/// Whether the open file `f` is still the one at `p`.
fn same_file(f: &std::fs::File, p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(p)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Mark a cache entry used now (its access time, which leaves the
/// modification time that keys templates alone), so that pruning keeps
/// it (best effort: an entry not touched may go a day early).
pub fn touch(p: &Path) {
    if let Ok(f) = std::fs::File::open(p) {
        let _ = f.set_times(std::fs::FileTimes::new().set_accessed(SystemTime::now()));
    }
}

/// When an entry was last used: touched, read, or made.
fn last_use(p: &Path) -> Option<SystemTime> {
    let m = std::fs::symlink_metadata(p).ok()?;
    match (m.accessed().ok(), m.modified().ok()) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Remove the entries of `cache` named `<prefix>...` (one kind: an
/// initramfs, a template) other than `current` that were not used for
/// `keep`, with the build lock and failure marker of each
/// (`.<name>.lock`, `.<name>.failed`); an entry whose build lock someone
/// holds stays. The caller holds the cache's lock. Returns what went.
pub(crate) fn prune(cache: &Path, prefix: &str, current: &Path, keep: Duration) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    let mut gone = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if !name.starts_with(prefix) || p == current {
            continue;
        }
        let old = last_use(&p)
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > keep);
        if !old {
            continue;
        }
        let lock = format!(".{name}.lock");
        let Some(_held) = CacheLock::try_named(cache, &lock) else {
            continue;
        };
        let removed = if p.is_dir() {
            // Out of the way first: a clone still mapping its memory keeps
            // the inode, and no one finds a half-removed template.
            remove_aside(&p);
            !p.exists()
        } else {
            std::fs::remove_file(&p).is_ok()
        };
        if removed {
            let _ = std::fs::remove_file(cache.join(format!(".{name}.failed")));
            let _ = std::fs::remove_file(cache.join(&lock));
            gone.push(p);
        }
    }
    gone
}

/// Move a directory of the cache out of the way (a rename, so no one
/// finds it half-removed) and remove it; a process still mapping a file
/// of it keeps that inode until it ends.
pub(crate) fn remove_aside(dir: &Path) {
    let trash = dir.with_file_name(format!(
        ".trash-{}-{}",
        std::process::id(),
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    if std::fs::rename(dir, &trash).is_ok() {
        let _ = std::fs::remove_dir_all(&trash);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn age(p: &Path, secs: u64) {
        let f = std::fs::File::open(p).unwrap();
        let t = SystemTime::now() - Duration::from_secs(secs);
        f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }

    #[test]
    fn prune_removes_old_entries_of_one_kind_but_the_current_recent_and_locked() {
        let d = std::env::temp_dir().join(format!("nk-cache-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let day = 24 * 3600;
        for n in [
            "initramfs-k-old.cpio",
            "initramfs-k-cur.cpio",
            "initramfs-k-new.cpio",
            "accel.json",
        ] {
            std::fs::write(d.join(n), b"x").unwrap();
        }
        for n in [
            "template-k-old",
            "template-k-busy",
            "template-k-new",
            "kernel-k",
        ] {
            std::fs::create_dir_all(d.join(n).join("empty")).unwrap();
            std::fs::write(d.join(n).join("memory"), b"m").unwrap();
        }
        std::fs::write(d.join(".template-k-old.failed"), b"why").unwrap();
        for n in [
            "initramfs-k-old.cpio",
            "initramfs-k-cur.cpio",
            "accel.json",
            "template-k-old",
            "template-k-busy",
            "kernel-k",
        ] {
            age(&d.join(n), 2 * day);
        }
        // Another process builds or restores template-k-busy.
        let held = CacheLock::take_named(&d, ".template-k-busy.lock").unwrap();
        let gone = prune(
            &d,
            "initramfs-",
            &d.join("initramfs-k-cur.cpio"),
            KEEP_UNUSED,
        );
        assert_eq!(gone, vec![d.join("initramfs-k-old.cpio")]);
        let gone = prune(&d, "template-", &d.join("template-k-new"), KEEP_UNUSED);
        assert_eq!(gone, vec![d.join("template-k-old")]);
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".template-k-busy.lock",
                "accel.json",
                "initramfs-k-cur.cpio",
                "initramfs-k-new.cpio",
                "kernel-k",
                "template-k-busy",
                "template-k-new",
            ]
        );
        // Once free and touched (used), it stays; untouched, it goes.
        drop(held);
        touch(&d.join("template-k-busy"));
        assert!(prune(&d, "template-", &d.join("template-k-new"), KEEP_UNUSED).is_empty());
        age(&d.join("template-k-busy"), 2 * day);
        assert_eq!(
            prune(&d, "template-", &d.join("template-k-new"), KEEP_UNUSED),
            vec![d.join("template-k-busy")]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
