//! linux.sysctl: which keys are namespaced (and so allowed), and writing them.

use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use oci_spec::runtime::LinuxNamespaceType;
use std::collections::HashSet;

/// Check a sysctl key against the namespaces the container gets for itself
/// (runc's rules): `ns` holds the types that are new, or joined by a path
/// that is not the runtime's own namespace. A key of a type the container
/// shares with the host would change the host.
pub fn check_allowed(key: &str, ns: &HashSet<u64>) -> std::result::Result<(), String> {
    let has = |t: LinuxNamespaceType| ns.contains(&(t as u64));
    if key.contains("..") || key.contains('\0') || key.starts_with('/') {
        return Err(format!("{key:?} is not a sysctl name"));
    }
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        return if has(LinuxNamespaceType::Ipc) {
            Ok(())
        } else {
            Err(format!(
                "{key} is not allowed in the host's ipc namespace (give the container an ipc namespace of its own: none is listed, or its path is the runtime's own)"
            ))
        };
    }
    if key.starts_with("net.") {
        return if has(LinuxNamespaceType::Network) {
            Ok(())
        } else {
            Err(format!(
                "{key} not allowed in host network namespace (give the container a network namespace of its own: none is listed, or its path is the runtime's own)"
            ))
        };
    }
    if key == "kernel.domainname" {
        return if has(LinuxNamespaceType::Uts) {
            Ok(())
        } else {
            Err(format!(
                "{key} is not allowed in the host's uts namespace (give the container a uts namespace of its own: none is listed, or its path is the runtime's own)"
            ))
        };
    }
    if key == "kernel.hostname" {
        return Err("kernel.hostname: use the hostname field of config.json instead".into());
    }
    Err(format!(
        "{key} is not in a separate kernel namespace; it would change the host"
    ))
}

/// Write the sysctls under /proc/sys (inside the container's /proc).
pub fn apply(map: &std::collections::HashMap<String, String>) -> Result<()> {
    if map.is_empty() {
        return Ok(());
    }
    explain::step(&catalog::SYSCTL, || {
        map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    for (k, v) in map {
        let p = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&p, v)
            .map_err(|e| Error::msg(format!("linux.sysctl {k}={v}: write {p}: {e}")))?;
    }
    Ok(())
}

/// linux.sysctl: each key one the container's namespaces make its own.
pub fn check(
    linux: &oci_spec::runtime::Linux,
    asked: &super::namespaces::Asked,
) -> crate::error::Checked {
    for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
        check_allowed(key, &asked.private).map_err(|reason| {
            crate::error::FieldError::new(format!("linux.sysctl[{key:?}]"), reason)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let net: HashSet<u64> = [LinuxNamespaceType::Network as u64].into_iter().collect();
        assert!(check_allowed("net.ipv4.ip_forward", &net).is_ok());
        assert!(check_allowed("net.ipv4.ip_forward", &HashSet::new()).is_err());
        assert!(check_allowed("kernel.shmmax", &net).is_err());
        assert!(check_allowed("vm.swappiness", &net).is_err());
        assert!(check_allowed("kernel.hostname", &net).is_err());
    }
}
