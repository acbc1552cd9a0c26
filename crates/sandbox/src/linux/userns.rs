//! User namespaces: writing a child's uid_map and gid_map from the parent
//! (`process::userns` makes a namespace of given mappings with them).

use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use oci_spec::runtime::LinuxIdMapping;

/// The text of a uid_map/gid_map file.
pub fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Write both maps for `pid`. An unprivileged caller may only map itself, and
/// must deny setgroups first; anything more needs newuidmap/newgidmap.
pub fn write_maps(pid: i32, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<()> {
    explain::step(&catalog::USERNS_MAP, || {
        format!(
            "/proc/{pid}/uid_map: {}; gid_map: {}",
            map_text(uid).trim().replace('\n', ", "),
            map_text(gid).trim().replace('\n', ", ")
        )
    });
    let root = nix::unistd::geteuid().is_root();
    if !root {
        // Mapping only our own ids: the kernel allows it after setgroups=deny.
        let _ = std::fs::write(format!("/proc/{pid}/setgroups"), "deny");
    }
    write_one(pid, "uid_map", uid, "newuidmap")?;
    write_one(pid, "gid_map", gid, "newgidmap")?;
    Ok(())
}

/// Write one map file of `pid` (`uid_map` or `gid_map`), through the setuid
/// `helper` when an unprivileged caller may not write it.
pub fn write_one(pid: i32, file: &str, maps: &[LinuxIdMapping], helper: &str) -> Result<()> {
    if maps.is_empty() {
        return Ok(());
    }
    let p = format!("/proc/{pid}/{file}");
    match std::fs::write(&p, map_text(maps)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !nix::unistd::geteuid().is_root() => {
            // Try the setuid helper from uidmap, as runc does for rootless.
            let mut args = vec![pid.to_string()];
            for m in maps {
                args.extend([
                    m.container_id().to_string(),
                    m.host_id().to_string(),
                    m.size().to_string(),
                ]);
            }
            let st = std::process::Command::new(helper).args(&args).status();
            match st {
                Ok(s) if s.success() => Ok(()),
                _ => Err(Error::msg(format!(
                    "write {p}: {e}; an unprivileged user can map only its own id unless {helper} (package uidmap) and /etc/sub{}id allow more",
                    if file == "uid_map" { "u" } else { "g" }
                ))),
            }
        }
        Err(e) => Err(Error::msg(format!(
            "write {p} ({}): {e}",
            map_text(maps).trim()
        ))),
    }
}

/// linux.uidMappings and gidMappings: only with a user namespace, both for
/// a new one, each range non-empty and inside the 32-bit id space.
pub fn check_mappings(
    linux: &oci_spec::runtime::Linux,
    asked: &super::namespaces::Asked,
) -> crate::error::Checked {
    use crate::error::FieldError;
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if maps && !asked.userns {
        return Err(FieldError::new(
            "linux.uidMappings",
            "id mappings need a user namespace in linux.namespaces",
        ));
    }
    let both = [
        ("linux.uidMappings", linux.uid_mappings()),
        ("linux.gidMappings", linux.gid_mappings()),
    ];
    if asked.new_userns {
        for (field, m) in &both {
            if m.as_ref().is_none_or(|m| m.is_empty()) {
                return Err(FieldError::new(
                    *field,
                    "a new user namespace needs uidMappings and gidMappings (without a gid mapping not even gid 0 exists in it)",
                ));
            }
        }
    }
    for (field, maps) in both {
        for (i, m) in maps.iter().flatten().enumerate() {
            if m.size() == 0 {
                return Err(FieldError::new(
                    format!("{field}[{i}].size"),
                    "must be at least 1",
                ));
            }
            if (m.container_id() as u64 + m.size() as u64) > u32::MAX as u64
                || (m.host_id() as u64 + m.size() as u64) > u32::MAX as u64
            {
                return Err(FieldError::new(
                    format!("{field}[{i}]"),
                    "range runs past the largest id (4294967295)",
                ));
            }
        }
    }
    Ok(())
}
