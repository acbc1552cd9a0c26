//! Linux security modules: AppArmor profiles and SELinux labels, applied when
//! the host has the LSM. Asking for a process label on a host without it is
//! an error; a mount label is left out with a warning.

use crate::error::{Error, Result};
use crate::explain::{self, catalog};

/// AppArmor is loaded and enabled.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
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
    std::fs::write(p, format!("exec {profile}")).map_err(|e| {
        Error::msg(format!(
            "process.apparmorProfile {profile:?}: write {p}: {e}"
        ))
    })
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
    std::fs::write("/proc/self/attr/exec", label)
        .map_err(|e| Error::msg(format!("process.selinuxLabel {label:?}: {e}")))
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
