//! Linux security modules: AppArmor profiles and SELinux labels, applied when
//! the host has the LSM. Asking for a process label on a host without it is
//! an error; a mount label is left out with a warning.

use crate::error::{Error, Result};
use crate::explain::{self, catalog};

/// AppArmor is loaded and enabled.
pub fn apparmor_enabled() -> bool {
    // Bounded: an exec'd process reads the container's /sys.
    crate::linux::fs::read_path(
        std::path::Path::new("/sys/module/apparmor/parameters/enabled"),
        64,
    )
    .is_ok_and(|s| s.trim_ascii() == b"Y")
        && std::path::Path::new("/sys/kernel/security/apparmor").exists()
}

/// SELinux is mounted.
pub fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Set the AppArmor profile for the next exec.
pub fn apply_apparmor(profile: &str) -> Result<()> {
    if profile.is_empty() {
        return Ok(());
    }
    if !apparmor_enabled() {
        return Err(Error::Unsupported(format!(
            "process.apparmorProfile {profile:?}: AppArmor is not enabled on this host"
        )));
    }
    explain::step(&catalog::LSM_LABEL, || {
        format!("AppArmor profile {profile}")
    });
    let p = "/proc/self/attr/apparmor/exec";
    let p = if std::path::Path::new(p).exists() {
        p
    } else {
        "/proc/self/attr/exec"
    };
    write_attr(
        std::path::Path::new(p),
        format!("exec {profile}").as_bytes(),
    )
    .map_err(|e| Error::msg(format!("process.apparmorProfile {profile:?}: {e}")))
}

/// Set the SELinux label for the next exec.
pub fn apply_selinux(label: &str) -> Result<()> {
    if label.is_empty() {
        return Ok(());
    }
    if !selinux_enabled() {
        return Err(Error::Unsupported(format!(
            "process.selinuxLabel {label:?}: SELinux is not enabled on this host"
        )));
    }
    explain::step(&catalog::LSM_LABEL, || format!("SELinux label {label}"));
    write_attr(
        std::path::Path::new("/proc/self/attr/exec"),
        label.as_bytes(),
    )
    .map_err(|e| Error::msg(format!("process.selinuxLabel {label:?}: {e}")))
}

/// statfs(2) f_type of procfs.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Write an LSM attribute under /proc/self/attr, through a descriptor that
/// fstatfs says is on procfs. The write happens after pivot_root, where
/// /proc is whatever the container's mounts put there: with a plain
/// directory or a tmpfs over it (CVE-2019-16884), the profile would be
/// written into an ordinary file and the process would run unconfined
/// without an error. Checking the descriptor we write through (not the
/// path) leaves no window for a swap.
pub fn write_attr(path: &std::path::Path, value: &[u8]) -> Result<()> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::open(
        path,
        OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", path.display()), e))?;
    let fs = nix::sys::statfs::fstatfs(&fd)
        .map_err(|e| Error::sys(format!("fstatfs {}", path.display()), e))?;
    let magic = fs.filesystem_type().0 as i64;
    if magic != PROC_SUPER_MAGIC {
        return Err(Error::msg(format!(
            "{} is not on procfs (statfs magic {magic:#x}, want {PROC_SUPER_MAGIC:#x}): something is mounted over /proc in the container, so the label would not be applied; refusing",
            path.display()
        )));
    }
    let n = nix::unistd::write(&fd, value)
        .map_err(|e| Error::sys(format!("write {}", path.display()), e))?;
    if n != value.len() {
        return Err(Error::msg(format!(
            "write {}: {n} of {} bytes written",
            path.display(),
            value.len()
        )));
    }
    Ok(())
}

/// linux.mountLabel as the mounts get it. Without SELinux no file can carry
/// a label and the kernel refuses `context=` (EINVAL, where runc 1.1.5
/// fails), while nothing the container may do depends on the label: it is
/// left out with a warning, as crun does.
pub fn mount_label(label: Option<&str>) -> Option<&str> {
    let l = label.filter(|l| !l.is_empty())?;
    if selinux_enabled() {
        return Some(l);
    }
    crate::logging::warn(|| {
        format!("linux.mountLabel {l:?} ignored: SELinux is not enabled on this host, so no mount can carry a label")
    });
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attr_file_off_procfs_is_refused() {
        // What a container sees at /proc/self/attr/exec when its /proc is a
        // tmpfs or a directory of its image: an ordinary, writable file.
        let d = std::env::temp_dir().join(format!("nk-lsm-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let fake = d.join("exec");
        std::fs::write(&fake, "").unwrap();
        let e = write_attr(&fake, b"exec nk-profile")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not on procfs"), "{e}");
        assert_eq!(std::fs::read_to_string(&fake).unwrap(), "");
        std::fs::remove_dir_all(&d).unwrap();
        // The real procfs passes the check (comm: harmless to write).
        write_attr(
            std::path::Path::new("/proc/thread-self/comm"),
            b"nk-lsm-test",
        )
        .unwrap();
    }
}
