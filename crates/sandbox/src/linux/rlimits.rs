//! process.rlimits with setrlimit(2).

use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// nix's name of an rlimit type.
pub fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Apply every rlimit; an error names the limit and the values.
pub fn apply(limits: &[PosixRlimit]) -> Result<()> {
    if limits.is_empty() {
        return Ok(());
    }
    explain::step(&catalog::RLIMITS, || {
        limits
            .iter()
            .map(|l| format!("{} soft={} hard={}", name(l), l.soft(), l.hard()))
            .collect::<Vec<_>>()
            .join(", ")
    });
    for l in limits {
        if let Err(e) = setrlimit(resource(l.typ()), l.soft(), l.hard()) {
            let hint = if e == nix::errno::Errno::EPERM {
                " (raising a hard limit needs CAP_SYS_RESOURCE, which this host does not give; ask for no more than the current hard limit)"
            } else {
                ""
            };
            return Err(Error::msg(format!(
                "process.rlimits: setrlimit {} soft={} hard={}: {e}{hint}",
                name(l),
                l.soft(),
                l.hard()
            )));
        }
    }
    Ok(())
}

/// The limit's name as config.json spells it (RLIMIT_NOFILE).
fn name(l: &oci_spec::runtime::PosixRlimit) -> String {
    serde_json::to_value(l.typ())
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{:?}", l.typ()))
}
