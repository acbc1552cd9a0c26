//! Per-process attributes beyond ids and capabilities: personality, the
//! scheduler, the I/O priority, CPU affinity, oom_score_adj and the keyring.

use crate::error::{Error, Result};
use crate::explain::{self, catalog};

/// Write /proc/self/oom_score_adj.
pub fn oom_score_adj(v: i32) -> Result<()> {
    explain::step(&catalog::OOM_SCORE, || format!("oom_score_adj = {v}"));
    std::fs::write("/proc/self/oom_score_adj", v.to_string()).map_err(|e| {
        Error::msg(format!(
            "process.oomScoreAdj {v}: write /proc/self/oom_score_adj: {e}"
        ))
    })
}

/// Join a new session keyring, so containers do not share the host's (unless --no-new-keyring).
pub fn new_session_keyring(name: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    explain::step(&catalog::KEYRING, || {
        format!("keyctl(KEYCTL_JOIN_SESSION_KEYRING, {name:?})")
    });
    let cname = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, name) reads a NUL-terminated string that lives for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            cname.as_ptr(),
        )
    };
    if r < 0 {
        let e = nix::errno::Errno::last();
        // Kernels without keyrings, or seccomp denying keyctl: not fatal, as in runc.
        if e != nix::errno::Errno::ENOSYS && e != nix::errno::Errno::EPERM {
            return Err(Error::sys("join a new session keyring", e));
        }
    }
    Ok(())
}

/// Apply linux.personality (domain LINUX or LINUX32).
pub fn personality(domain: &str) -> Result<()> {
    let v: libc::c_ulong = match domain {
        "LINUX" => 0x0000,
        "LINUX32" => 0x0008,
        other => {
            return Err(Error::msg(format!(
                "linux.personality.domain {other:?}: use LINUX or LINUX32"
            )))
        }
    };
    explain::step(&catalog::PERSONALITY, || {
        format!("personality(PER_{domain})")
    });
    // SAFETY: personality(2) takes a plain integer.
    if unsafe { libc::personality(v) } < 0 {
        return Err(Error::sys(
            format!("personality({domain})"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// The numeric I/O priority of a class and level.
pub fn ioprio_value(class: &str, prio: i64) -> Result<i32> {
    let c = match class {
        "IOPRIO_CLASS_RT" => 1,
        "IOPRIO_CLASS_BE" => 2,
        "IOPRIO_CLASS_IDLE" => 3,
        other => {
            return Err(Error::msg(format!(
                "process.ioPriority.class {other:?} is unknown"
            )))
        }
    };
    if !(0..=7).contains(&prio) {
        return Err(Error::msg(format!(
            "process.ioPriority.priority {prio} is outside 0..7"
        )));
    }
    Ok((c << 13) | prio as i32)
}

/// Set the I/O priority of this process.
pub fn set_ioprio(value: i32) -> Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    explain::step(&catalog::IOPRIO, || {
        format!(
            "ioprio_set(IOPRIO_WHO_PROCESS, 0, class {} level {})",
            value >> 13,
            value & 7
        )
    });
    // SAFETY: ioprio_set takes integers only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if r < 0 {
        return Err(Error::sys("ioprio_set", nix::errno::Errno::last()));
    }
    Ok(())
}

/// Set the CPU affinity from a list such as `0-1,3`.
pub fn set_affinity(list: &str) -> Result<()> {
    let cpus = crate::cgroups::parse_cpu_list(list)
        .ok_or_else(|| Error::msg(format!("execCPUAffinity {list:?} is not a CPU list")))?;
    explain::step(&catalog::CPU_AFFINITY, || {
        format!("sched_setaffinity(0, {{{list}}})")
    });
    let mut set = nix::sched::CpuSet::new();
    for c in cpus {
        set.set(c as usize)
            .map_err(|e| Error::sys(format!("execCPUAffinity: cpu {c}"), e))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| Error::sys(format!("sched_setaffinity({list})"), e))
}

/// Set the scheduler policy and priority.
pub fn set_scheduler(policy: i32, priority: i32, nice: i32) -> Result<()> {
    explain::step(&catalog::SCHEDULER, || {
        format!("sched_setscheduler(0, policy {policy}, priority {priority}); nice {nice}")
    });
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: sched_setscheduler reads a sched_param that lives for the call.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } < 0 {
        return Err(Error::sys(
            format!("sched_setscheduler(policy {policy}, priority {priority})"),
            nix::errno::Errno::last(),
        ));
    }
    if nice != 0 {
        // SAFETY: setpriority with integer arguments.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } < 0 {
            return Err(Error::sys(
                format!("setpriority(nice {nice})"),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}
