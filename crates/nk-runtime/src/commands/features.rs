//! `features`: the OCI runtime features document (runtime-spec
//! features.md), listing only what this runtime implements on this host.
//! The unit tests hold the list to the code: every mount option listed is
//! one the mount code understands, never passed on as unknown mount data.

use crate::report::Globals;

/// Mount options honoured by linux::mounts (flags, recursive attributes,
/// propagation and tmpcopyup). idmap/ridmap are left out: see mountExtensions.
pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "lazytime",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// seccomp(2) filter flags with the kernel release that introduced them.
const SECCOMP_FLAGS: &[(&str, (u32, u32))] = &[
    ("SECCOMP_FILTER_FLAG_TSYNC", (3, 17)),
    ("SECCOMP_FILTER_FLAG_LOG", (4, 14)),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", (4, 17)),
    ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", (5, 19)),
];

/// The running kernel's (major, minor).
fn kernel_release() -> (u32, u32) {
    let r = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = r
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

pub fn features() -> serde_json::Value {
    let kernel = kernel_release();
    let known: Vec<&str> = SECCOMP_FLAGS.iter().map(|(n, _)| *n).collect();
    let supported: Vec<&str> = SECCOMP_FLAGS
        .iter()
        .filter(|(_, since)| kernel >= *since)
        .map(|(n, _)| *n)
        .collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": sandbox::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": sandbox::linux::capabilities::names(u64::MAX >> (63 - sandbox::linux::capabilities::last_cap())),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                "knownFlags": known,
                "supportedFlags": supported
            },
            "apparmor": {"enabled": sandbox::linux::lsm::apparmor_enabled()},
            "selinux": {"enabled": sandbox::linux::lsm::selinux_enabled()},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            // CRIU is not integrated (and Debian 12's criu 3.17 cannot run
            // on this host's kernel): checkpoint and restore say so.
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "org.nano-sandbox.mode": "container|vm"
        }
    })
}

pub fn run(_g: &Globals) -> anyhow::Result<i32> {
    println!("{}", serde_json::to_string_pretty(&features())?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_mount_option_is_understood() {
        for o in MOUNT_OPTIONS {
            let p = sandbox::linux::mounts::parse_options(&[o.to_string()]);
            assert!(
                p.data.is_empty(),
                "{o} is listed in features but would be passed to mount(2) as data"
            );
        }
    }

    #[test]
    fn shape() {
        let f = features();
        assert_eq!(f["ociVersionMin"], "1.0.0");
        let known = f["linux"]["seccomp"]["knownFlags"].as_array().unwrap();
        for s in f["linux"]["seccomp"]["supportedFlags"].as_array().unwrap() {
            assert!(known.contains(s));
        }
        assert!(f["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("CAP_SYS_ADMIN")));
    }
}
