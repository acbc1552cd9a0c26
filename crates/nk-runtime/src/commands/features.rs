//! `features`: the OCI runtime features document, listing only what this
//! runtime implements.

use crate::report::Globals;

pub fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": sandbox::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "lazytime", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid",
            "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable",
            "rw", "shared", "silent", "slave", "strictatime", "suid", "sync", "unbindable",
            "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rnoatime",
            "rstrictatime", "rnodiratime", "rdiratime", "rnosymfollow", "rsymfollow", "tmpcopyup"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": sandbox::linux::capabilities::names(u64::MAX >> (63 - sandbox::linux::capabilities::last_cap())),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
            },
            "apparmor": {"enabled": sandbox::linux::lsm::apparmor_enabled()},
            "selinux": {"enabled": sandbox::linux::lsm::selinux_enabled()},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "org.nano-sandbox.mode": "container|vm"
        }
    })
}

pub fn run(_g: &Globals) -> anyhow::Result<i32> {
    println!("{}", serde_json::to_string_pretty(&features())?);
    Ok(0)
}
