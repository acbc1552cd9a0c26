//! process.rlimits with setrlimit(2).

use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// The resource number of an rlimit type.
pub fn resource(t: PosixRlimitType) -> libc::c_int {
    (match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
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
        let rl = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: prlimit on ourselves (pid 0) reading a struct that lives for the call.
        let r = unsafe { libc::prlimit(0, resource(l.typ()) as _, &rl, std::ptr::null_mut()) };
        if r < 0 {
            let e = nix::errno::Errno::last();
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
