//! Capabilities: drop from the bounding set, then set inheritable, permitted
//! and effective with capset(2), then the ambient set.

use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use oci_spec::runtime::{Capability, LinuxCapabilities};
use std::collections::HashSet;

/// Capability number of an oci-spec capability.
pub fn number(c: &Capability) -> Option<u32> {
    let name = format!("CAP_{c}");
    name.parse::<caps::Capability>()
        .ok()
        .map(|c| c.index() as u32)
}

/// Capability number from a name such as CAP_NET_ADMIN or NET_ADMIN.
pub fn number_from_name(name: &str) -> Option<u32> {
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    full.parse::<caps::Capability>()
        .ok()
        .map(|c| c.index() as u32)
}

/// The highest capability this kernel knows: the highest number that
/// PR_CAPBSET_READ accepts. Asked of the kernel rather than read from
/// /proc/sys/kernel/cap_last_cap, which in an exec'd process is the
/// container's /proc, the container's to fake.
pub fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        // SAFETY: PR_CAPBSET_READ takes a capability number, no pointers.
        let known = |c: u32| unsafe { libc::prctl(libc::PR_CAPBSET_READ, c as libc::c_ulong, 0, 0, 0) } >= 0;
        let (mut lo, mut hi) = (0u32, 63u32);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if known(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    })
}

/// Bit mask of a set (None → empty).
pub fn mask(set: &Option<HashSet<Capability>>) -> u64 {
    let last = last_cap();
    set.iter()
        .flatten()
        .filter_map(number)
        .filter(|n| *n <= last)
        .fold(0u64, |m, n| m | (1u64 << n))
}

/// The five masks to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Masks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl Masks {
    /// From the config's capabilities (absent → empty sets, as runc does).
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Masks {
        match c {
            None => Masks::default(),
            Some(c) => Masks {
                bounding: mask(c.bounding()),
                effective: mask(c.effective()),
                permitted: mask(c.permitted()),
                inheritable: mask(c.inheritable()),
                ambient: mask(c.ambient()),
            },
        }
    }
}

/// Names of the capabilities in a mask.
pub fn names(m: u64) -> Vec<String> {
    (0..64)
        .filter(|i| m & (1u64 << i) != 0)
        .filter_map(|i| caps::all().into_iter().find(|c| c.index() as u32 == i))
        .map(|c| c.to_string())
        .collect()
}

/// Drop every capability not in `bounding` from the bounding set.
pub fn drop_bounding(bounding: u64) -> Result<()> {
    for cap in 0..=last_cap() {
        if bounding & (1u64 << cap) == 0 {
            // SAFETY: prctl(PR_CAPBSET_DROP) with a capability number; no pointers.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r < 0 {
                let e = nix::errno::Errno::last();
                if e != nix::errno::Errno::EINVAL {
                    return Err(Error::sys(
                        format!("drop capability {cap} from the bounding set"),
                        e,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// CAP_SYS_ADMIN, which loading a seccomp filter needs without no_new_privs.
pub const SYS_ADMIN: u64 = 1 << 21;

/// Set effective, permitted and inheritable in one capset(2), then ambient.
pub fn apply(m: &Masks) -> Result<()> {
    explain::step(&catalog::CAPS, || {
        let n = names(m.effective);
        format!(
            "bounding {} caps, effective [{}], ambient {}",
            m.bounding.count_ones(),
            if n.is_empty() {
                "none".into()
            } else {
                n.join(" ")
            },
            m.ambient.count_ones()
        )
    });
    capset(m.effective, m.permitted, m.inheritable).map_err(|e| {
        // Name what cannot be granted: a capability the runtime itself does
        // not hold (the host's bounding set lacks it) cannot be given.
        let held = current_permitted().unwrap_or(u64::MAX);
        let missing = (m.effective | m.permitted | m.inheritable) & !held;
        if missing == 0 {
            return e;
        }
        Error::msg(format!(
            "process.capabilities: {} cannot be granted: the runtime does not hold {} itself (the host's bounding set lacks {}); remove {} from the config",
            names(missing).join(", "),
            if missing.count_ones() == 1 { "it" } else { "them" },
            if missing.count_ones() == 1 { "it" } else { "them" },
            if missing.count_ones() == 1 { "it" } else { "them" },
        ))
    })?;
    // SAFETY: prctl(PR_CAP_AMBIENT, CLEAR_ALL) takes no pointers.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    for cap in 0..64u32 {
        if m.ambient & (1u64 << cap) != 0 {
            // SAFETY: prctl(PR_CAP_AMBIENT_RAISE) with a capability number.
            let r = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            if r < 0 {
                crate::logging::debug(|| {
                    format!(
                        "ambient capability {} not raised (it must be permitted and inheritable)",
                        names(1u64 << cap).join("")
                    )
                });
            }
        }
    }
    Ok(())
}

/// Effective, permitted and inheritable in one capset(2), and nothing else:
/// the only call besides execve that may follow the seccomp filter (runc
/// makes it there too, so every profile allows it).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<()> {
    let sets = super::syscall::CapSets {
        effective,
        permitted,
        inheritable,
    };
    super::syscall::capset_self(&sets).map_err(|e| {
        Error::sys(
            "capset (is a capability in effective/inheritable missing from permitted or bounding?)",
            e,
        )
    })
}

/// This process's permitted set (capget(2)).
fn current_permitted() -> Option<u64> {
    super::syscall::capget_self().ok().map(|c| c.permitted)
}

/// Keep capabilities across the setuid that follows (PR_SET_KEEPCAPS).
pub fn keep_caps(on: bool) -> Result<()> {
    // SAFETY: prctl(PR_SET_KEEPCAPS) takes an integer flag.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, on as libc::c_ulong, 0, 0, 0) } < 0 {
        return Err(Error::sys(
            "prctl(PR_SET_KEEPCAPS)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(number(&Capability::Kill), Some(5));
        assert_eq!(number(&Capability::SysAdmin), Some(21));
        assert_eq!(number_from_name("net_admin"), Some(12));
        assert_eq!(number_from_name("CAP_CHOWN"), Some(0));
        assert_eq!(number_from_name("CAP_BOGUS"), None);
        assert_eq!(names(1 << 5), vec!["CAP_KILL".to_string()]);
        let set: HashSet<Capability> = [Capability::Chown, Capability::Kill].into_iter().collect();
        assert_eq!(mask(&Some(set)), (1 << 0) | (1 << 5));
    }
}
