//! The OCI runtime features document (runtime-spec features.md), as
//! oci-spec's `Features`. Every list is read off the table the code that
//! implements it uses (mount options, namespaces, capabilities, seccomp
//! actions, operators, architectures and flags, hook points), so the
//! document cannot claim what the runtime does not do, nor miss what it does.

use crate::linux::{capabilities, hooks, lsm, mounts, namespaces, seccomp};
use oci_spec::runtime::{
    Apparmor, Cgroup, Features, IDMap, IntelRdt, LinuxFeature, MemoryPolicy, MountExtensions,
    NetDevices, Seccomp, Selinux,
};

/// The oldest runtime-spec version a config may declare.
pub const OCI_VERSION_MIN: &str = "1.0.0";

/// The running kernel's (major, minor) release; (0, 0) when unreadable.
pub fn kernel_release() -> (u32, u32) {
    let r = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = r
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn strings<T>(it: impl IntoIterator<Item = T>, f: impl Fn(T) -> String) -> Vec<String> {
    it.into_iter().map(f).collect()
}

/// What this runtime implements on this host.
pub fn features() -> Features {
    let kernel = kernel_release();
    let mut ns = namespaces::JOIN_ORDER.to_vec();
    ns.sort_by_key(seccomp::spec_name);

    let mut sc = Seccomp::default();
    sc.set_enabled(Some(true))
        .set_actions(Some(seccomp::ACTIONS.to_vec()))
        .set_operators(Some(strings(seccomp::OPERATORS, |o| {
            seccomp::spec_name(&o)
        })))
        .set_archs(Some(seccomp::ARCHS.to_vec()))
        .set_known_flags(Some(strings(seccomp::FILTER_FLAGS, |(f, _)| {
            seccomp::spec_name(&f)
        })))
        .set_supported_flags(Some(strings(
            seccomp::FILTER_FLAGS
                .into_iter()
                .filter(|(_, since)| kernel >= *since),
            |(f, _)| seccomp::spec_name(&f),
        )));

    let mut cg = Cgroup::default();
    cg.set_v1(Some(true))
        .set_v2(Some(true))
        .set_systemd(Some(false))
        .set_systemd_user(Some(false))
        .set_rdma(Some(false));

    let mut aa = Apparmor::default();
    aa.set_enabled(Some(lsm::apparmor_enabled()));
    let mut se = Selinux::default();
    se.set_enabled(Some(lsm::selinux_enabled()));
    let mut rdt = IntelRdt::default();
    rdt.set_enabled(Some(false));
    // Idmapped mounts work, but only as bind mounts (not the "idmap"
    // option on any filesystem the extension promises).
    let mut idmap = IDMap::default();
    idmap.set_enabled(Some(false));
    let mut mx = MountExtensions::default();
    mx.set_idmap(Some(idmap));

    // linux.netDevices: moved in by create (linux/netdevices.rs).
    let mut netdev = NetDevices::default();
    netdev.set_enabled(Some(true));

    // linux.memoryPolicy: set_mempolicy() in the container's process.
    let (modes, flags) = crate::linux::procattr::memory_policy_names();
    let mut mempolicy = MemoryPolicy::default();
    mempolicy.set_modes(Some(modes)).set_flags(Some(flags));

    let mut linux = LinuxFeature::default();
    linux
        .set_namespaces(Some(ns))
        .set_capabilities(Some(capabilities::names(
            u64::MAX >> (63 - capabilities::last_cap()),
        )))
        .set_cgroup(Some(cg))
        .set_seccomp(Some(sc))
        .set_apparmor(Some(aa))
        .set_selinux(Some(se))
        .set_intel_rdt(Some(rdt))
        .set_mount_extensions(Some(mx))
        .set_net_devices(Some(netdev))
        .set_memory_policy(Some(mempolicy));

    let mut f = Features::default();
    f.set_oci_version_min(OCI_VERSION_MIN.to_string())
        .set_oci_version_max(crate::state::OCI_VERSION.to_string())
        .set_hooks(Some(strings(hooks::KINDS, String::from)))
        .set_mount_options(Some(strings(mounts::known_options(), String::from)))
        .set_linux(Some(linux))
        .set_annotations(Some(
            [
                // runc says "true" whenever it is built with CRIU support;
                // here it also needs a criu binary to drive (whether CRIU
                // works on this kernel is `check`'s question).
                (
                    "org.opencontainers.runc.checkpoint.enabled",
                    if crate::criu::find(None).is_ok() {
                        "true"
                    } else {
                        "false"
                    },
                ),
                // VM mode checkpoints with CRIU inside the guest, from a
                // kit of the host's criu: the same binary is what it needs
                // (the guest kernel is one CRIU runs on; `check` says so).
                (
                    "org.nano-sandbox.checkpoint.vm",
                    if crate::criu::find(None).is_ok() {
                        "true"
                    } else {
                        "false"
                    },
                ),
                ("org.nano-sandbox.mode", "container|vm"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ));
    f
}

/// The features document as JSON: what is not set is left out (oci-spec
/// writes an unset field as null; runc, and the spec's examples, omit it).
pub fn to_json(f: &Features) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|_, v| !v.is_null());
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(f).unwrap_or_default();
    strip(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_mount_option_is_understood() {
        for o in features().mount_options().iter().flatten() {
            let p = mounts::parse_options(std::slice::from_ref(o));
            assert!(
                p.data.is_empty(),
                "{o} is listed in features but would be passed to mount(2) as data"
            );
        }
    }

    #[test]
    fn shape() {
        let f = to_json(&features());
        assert_eq!(f["ociVersionMin"], "1.0.0");
        let known = f["linux"]["seccomp"]["knownFlags"].as_array().unwrap();
        for s in f["linux"]["seccomp"]["supportedFlags"].as_array().unwrap() {
            assert!(known.contains(s));
        }
        assert!(known.contains(&"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV".into()));
        assert_eq!(
            f["linux"]["namespaces"],
            serde_json::json!(["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"])
        );
        assert_eq!(f["linux"]["seccomp"]["actions"][0], "SCMP_ACT_ALLOW");
        assert_eq!(f["linux"]["seccomp"]["operators"][0], "SCMP_CMP_EQ");
        assert!(f["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("CAP_SYS_ADMIN")));
        // Nothing unset is written as null.
        assert!(!f.to_string().contains("null"), "{f}");
    }

    #[test]
    fn every_listed_architecture_is_known_to_libseccomp() {
        use std::str::FromStr;
        for a in seccomp::ARCHS {
            let n = seccomp::spec_name(&a);
            assert!(libseccomp::ScmpArch::from_str(&n).is_ok(), "{n}");
        }
    }
}
