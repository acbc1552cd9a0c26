//! linux.netDevices: host network devices handed to the container. The
//! runtime moves each one from its own network namespace into the
//! container's (renamed when the entry has a `name`) once the container's
//! namespaces exist, before the prestart and createRuntime hooks, so that
//! those hooks see the device where the container will.
//!
//! A move is one RTM_NEWLINK with IFLA_NET_NS_FD and IFLA_IFNAME, so the
//! device never shows up in the container under its host name. The kernel
//! drops a device's addresses when it changes namespace; they are read
//! first and added again on the other side, and the link is brought up
//! again if it was up: the device arrives as it left (its MAC and MTU move
//! with it). Nothing is moved back at delete: when a new network namespace
//! goes, the kernel destroys the virtual devices in it and returns physical
//! ones to the host's initial namespace; a namespace joined by path keeps
//! its devices.

use crate::error::{Checked, Error, FieldError, Result};
use crate::explain::{self, catalog};
use crate::linux::namespaces::Asked;
use crate::linux::netlink::Socket;
use oci_spec::runtime::{Linux, LinuxNamespaceType, LinuxNetDevice};
use std::collections::HashMap;
use std::path::Path;

/// The longest interface name the kernel takes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Whether `name` is a name the kernel accepts for a network interface.
fn valid_ifname(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > IFNAME_MAX {
        return Err(format!(
            "{name:?} is longer than the kernel's {IFNAME_MAX} bytes for an interface name"
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(format!(
            "{name:?} is not an interface name (no '/', ':', whitespace, \".\" or \"..\")"
        ));
    }
    Ok(())
}

/// The name the device gets in the container: its `name`, else the host's.
fn target<'a>(host: &'a str, d: &'a LinuxNetDevice) -> &'a str {
    d.name()
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(host)
}

/// The entries in a stable order (the map's is random).
fn sorted(devs: &HashMap<String, LinuxNetDevice>) -> Vec<(&String, &LinuxNetDevice)> {
    let mut v: Vec<_> = devs.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// Check linux.netDevices before anything exists: valid names, no two
/// devices with one name in the container, and a network namespace of the
/// container's own to move them into.
pub fn check(linux: &Linux, asked: &Asked) -> Checked {
    let Some(devs) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    if !asked
        .private
        .contains(&(LinuxNamespaceType::Network as u64))
    {
        return Err(FieldError::new(
            "linux.netDevices",
            "the container shares the runtime's network namespace, so there is nowhere to move a device to: list a network namespace in linux.namespaces (new, or a path that is not the runtime's own)",
        ));
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (host, d) in sorted(devs) {
        valid_ifname(host)
            .map_err(|r| FieldError::new(format!("linux.netDevices[{host:?}]"), r))?;
        let name = target(host, d);
        valid_ifname(name)
            .map_err(|r| FieldError::new(format!("linux.netDevices[{host:?}].name"), r))?;
        if let Some(other) = seen.insert(name, host) {
            return Err(FieldError::new(
                format!("linux.netDevices[{host:?}].name"),
                format!("{name:?} is also the container's name for {other:?}: each device needs a name of its own"),
            ));
        }
    }
    Ok(())
}

/// Whether the config asks for any device.
pub fn wanted(linux: Option<&Linux>) -> bool {
    linux
        .and_then(|l| l.net_devices().as_ref())
        .is_some_and(|d| !d.is_empty())
}

/// Move every device of `linux.netDevices` from the runtime's network
/// namespace into the one at `netns` (the container init's
/// /proc/PID/ns/net). Errors name the device and say what to check;
/// `config` is the file they are reported against.
pub fn move_all(linux: &Linux, netns: &Path, config: &Path) -> Result<()> {
    let Some(devs) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let fail = |host: &str, reason: String| Error::Config {
        file: config.to_path_buf(),
        field: format!("linux.netDevices[{host:?}]"),
        reason,
    };
    let io = |op: &'static str, e: std::io::Error| Error::Io {
        op,
        path: netns.to_path_buf(),
        cause: e,
    };
    let ns =
        std::fs::File::open(netns).map_err(|e| io("open the container's network namespace", e))?;
    let mut host_nl = Socket::open().map_err(|e| {
        io(
            "open a netlink socket in the runtime's network namespace for",
            e,
        )
    })?;
    let mut inner = Socket::open_in(netns).map_err(|e| io("open a netlink socket in", e))?;
    for (host, d) in sorted(devs) {
        let name = target(host, d);
        let links = host_nl
            .links()
            .map_err(|e| fail(host, format!("listing the runtime's links: {e}")))?;
        let Some(link) = links.iter().find(|l| &l.name == host) else {
            return Err(fail(
                host,
                format!("no network device {host:?} in the runtime's network namespace (see `ip link show`)"),
            ));
        };
        let addrs = host_nl
            .addresses(link.index)
            .map_err(|e| fail(host, format!("reading its addresses: {e}")))?;
        host_nl.move_link(link.index, &ns, name).map_err(|e| {
            fail(
                host,
                format!("moving it into the container's network namespace as {name:?}: {e} (a name already taken there, or a device the kernel keeps in its namespace, such as lo)"),
            )
        })?;
        let moved = inner
            .links()
            .map_err(|e| fail(host, format!("listing the container's links: {e}")))?
            .into_iter()
            .find(|l| l.name == name)
            .ok_or_else(|| {
                fail(
                    host,
                    format!("moved, but no {name:?} in the container's network namespace"),
                )
            })?;
        for a in &addrs {
            match inner.add_address(moved.index, a) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                    return Err(fail(
                        host,
                        format!("adding its address {a} again as {name}: {e}"),
                    ))
                }
                _ => {}
            }
        }
        let up = link.flags & libc::IFF_UP as u32 != 0;
        if up {
            inner
                .set_link(moved.index, libc::IFF_UP as u32, libc::IFF_UP as u32, None)
                .map_err(|e| fail(host, format!("bringing {name} up again: {e}")))?;
        }
        explain::step(&catalog::NET_DEVICES, || {
            let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            format!(
                "{host} -> {name} in {}, addresses [{}], {}",
                netns.display(),
                list.join(", "),
                if up { "up" } else { "down" }
            )
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernels_rules() {
        assert!(valid_ifname("eth0").is_ok());
        assert!(valid_ifname("a23456789012345").is_ok());
        for bad in ["", "a234567890123456", "a/b", "a:b", "a b", ".", ".."] {
            assert!(valid_ifname(bad).is_err(), "{bad:?}");
        }
    }

    fn linux_with(devs: &[(&str, Option<&str>)], ns: &[LinuxNamespaceType]) -> (Linux, Asked) {
        let raw = serde_json::json!({
            "namespaces": ns.iter().map(|t| serde_json::json!({"type": serde_json::to_value(t).unwrap()})).collect::<Vec<_>>(),
            "netDevices": devs.iter().map(|(h, n)| {
                (h.to_string(), match n { Some(n) => serde_json::json!({"name": n}), None => serde_json::json!({}) })
            }).collect::<serde_json::Map<_, _>>(),
        });
        let l: Linux = serde_json::from_value(raw).unwrap();
        let a = Asked::of(Some(&l));
        (l, a)
    }

    #[test]
    fn a_device_needs_a_network_namespace_of_the_containers_own() {
        let (l, a) = linux_with(&[("dummy0", None)], &[LinuxNamespaceType::Mount]);
        let e = check(&l, &a).unwrap_err();
        assert!(e.reason.contains("network namespace"), "{e:?}");
        let (l, a) = linux_with(&[("dummy0", None)], &[LinuxNamespaceType::Network]);
        check(&l, &a).unwrap();
    }

    #[test]
    fn two_devices_cannot_share_a_name_in_the_container() {
        let (l, a) = linux_with(
            &[("d1", Some("eth1")), ("d2", Some("eth1"))],
            &[LinuxNamespaceType::Network],
        );
        let e = check(&l, &a).unwrap_err();
        assert!(e.field.contains("d2"), "{e:?}");
        let (l, a) = linux_with(&[("d1", Some("a/b"))], &[LinuxNamespaceType::Network]);
        assert!(check(&l, &a).unwrap_err().field.ends_with(".name"));
    }
}
