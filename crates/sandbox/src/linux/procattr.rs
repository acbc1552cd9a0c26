//! Per-process attributes beyond ids and capabilities: personality, the
//! scheduler, the I/O priority, CPU affinity, oom_score_adj and the keyring.

use crate::error::{Error, FieldError, Result};
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

/// Join a new session keyring named `name`, so the container does not share
/// the caller's keys (skipped with --no-new-keyring). `searchable` adds the
/// possessor-independent "search" permission for the user, as runc does for
/// the init's keyring. Returns false when the kernel has no keyrings.
pub fn new_session_keyring(name: &str, searchable: bool) -> Result<bool> {
    use super::syscall::{keyctl_describe, keyctl_join_session_keyring, keyctl_setperm};
    const KEY_USR_SEARCH: u32 = 0x0008_0000;
    explain::step(&catalog::KEYRING, || {
        format!("keyctl(KEYCTL_JOIN_SESSION_KEYRING, {name:?})")
    });
    let cname = std::ffi::CString::new(name).unwrap_or_default();
    let id = match keyctl_join_session_keyring(&cname) {
        Ok(id) => id,
        // A kernel without keyrings (or a seccomp filter of an outer
        // container denying keyctl): not fatal, as in runc.
        Err(e) if e == nix::errno::Errno::ENOSYS || e == nix::errno::Errno::EPERM => {
            crate::logging::debug(|| format!("no new session keyring: {e}"));
            return Ok(false);
        }
        Err(e) => return Err(Error::sys("join a new session keyring", e)),
    };
    if searchable {
        // The description starts with "type;uid;gid;perm;" (perm in hex).
        let mut buf = [0u8; 256];
        let n = keyctl_describe(id, &mut buf)
            .map_err(|e| Error::sys("describe the session keyring", e))?;
        let perm = Some(String::from_utf8_lossy(&buf[..n.min(buf.len())]).into_owned())
            .and_then(|d| d.split(';').nth(3).map(String::from))
            .and_then(|p| u32::from_str_radix(&p, 16).ok())
            .ok_or_else(|| {
                Error::msg("describe the session keyring: no permission field in its description")
            })?;
        keyctl_setperm(id, perm | KEY_USR_SEARCH)
            .map_err(|e| Error::sys("make the session keyring searchable", e))?;
    }
    Ok(true)
}

/// Apply linux.personality: the execution domain (LINUX or LINUX32; the
/// spec defines no flags yet, and validation refuses any).
pub fn personality(p: &oci_spec::runtime::LinuxPersonality) -> Result<()> {
    use nix::sys::personality::Persona;
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    // PER_LINUX is 0; PER_LINUX32 (0x0008) is a domain, not one of nix's
    // flags, so it is kept as given.
    let (v, name) = match p.domain() {
        D::PerLinux => (Persona::empty(), "LINUX"),
        D::PerLinux32 => (Persona::from_bits_retain(0x0008), "LINUX32"),
    };
    explain::step(&catalog::PERSONALITY, || format!("personality({name})"));
    nix::sys::personality::set(v)
        .map(drop)
        .map_err(|e| Error::sys(format!("linux.personality {name}"), e))
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
    explain::step(&catalog::IOPRIO, || {
        format!("ioprio_set(class {}, level {})", value >> 13, value & 7)
    });
    super::syscall::ioprio_set_self(value).map_err(|e| Error::sys("ioprio_set", e))
}

/// The largest NUMA node number any kernel build has (MAX_NUMNODES is
/// 1 << NODES_SHIFT, at most 10 on x86-64).
const MAX_NODE: u32 = 1023;

/// Every mode and flag of linux.memoryPolicy this runtime applies (for
/// `features`).
pub fn memory_policy_names() -> (Vec<String>, Vec<String>) {
    use oci_spec::runtime::{MemoryPolicyFlagType as F, MemoryPolicyModeType as M};
    let modes = [
        M::MpolDefault,
        M::MpolBind,
        M::MpolInterleave,
        M::MpolWeightedInterleave,
        M::MpolPreferred,
        M::MpolPreferredMany,
        M::MpolLocal,
    ];
    let flags = [
        F::MpolFNumaBalancing,
        F::MpolFRelativeNodes,
        F::MpolFStaticNodes,
    ];
    (
        modes.iter().map(|m| m.to_string()).collect(),
        flags.iter().map(|f| f.to_string()).collect(),
    )
}

/// set_mempolicy(2)'s mode and flag values for linux.memoryPolicy.
fn mempolicy_bits(mp: &oci_spec::runtime::LinuxMemoryPolicy) -> i32 {
    use oci_spec::runtime::{MemoryPolicyFlagType as F, MemoryPolicyModeType as M};
    let mode = match mp.mode() {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    };
    mp.flags().iter().flatten().fold(mode, |m, f| {
        m | match f {
            F::MpolFNumaBalancing => 1 << 13,
            F::MpolFRelativeNodes => 1 << 14,
            F::MpolFStaticNodes => 1 << 15,
        }
    })
}

fn mempolicy_text(mp: &oci_spec::runtime::LinuxMemoryPolicy) -> String {
    let flags: Vec<String> = mp.flags().iter().flatten().map(|f| f.to_string()).collect();
    format!(
        "mode {}, nodes {:?}, flags [{}]",
        mp.mode(),
        mp.nodes().as_deref().unwrap_or(""),
        flags.join(", ")
    )
}

/// The node list of linux.memoryPolicy.nodes (empty when unset or "").
fn mempolicy_nodes(
    mp: &oci_spec::runtime::LinuxMemoryPolicy,
) -> std::result::Result<Vec<u32>, String> {
    let s = mp.nodes().as_deref().unwrap_or("").trim();
    if s.is_empty() {
        return Ok(vec![]);
    }
    let nodes = parse_cpu_list(s).ok_or_else(|| {
        format!("{s:?} is not a list of memory nodes such as 0-3,5 (or a range too large)")
    })?;
    if let Some(n) = nodes.iter().find(|&&n| n > MAX_NODE) {
        return Err(format!(
            "{s:?}: node {n} is above the largest node number a kernel can have ({MAX_NODE})"
        ));
    }
    Ok(nodes)
}

/// linux.memoryPolicy, before anything exists: a node list that parses,
/// the modes that take nodes given some and the others none, and flags
/// that go together. The kernel checks the rest (nodes this host has).
pub fn check_memory_policy(linux: &oci_spec::runtime::Linux) -> crate::error::Checked {
    use oci_spec::runtime::{MemoryPolicyFlagType as F, MemoryPolicyModeType as M};
    let Some(mp) = linux.memory_policy() else {
        return Ok(());
    };
    let err = |field: &str, r: String| {
        crate::error::FieldError::new(format!("linux.memoryPolicy{field}"), r)
    };
    let nodes = mempolicy_nodes(mp).map_err(|r| err(".nodes", r))?;
    let flags = mp.flags().clone().unwrap_or_default();
    match mp.mode() {
        M::MpolDefault | M::MpolLocal if !nodes.is_empty() || !flags.is_empty() => {
            return Err(err(
                "",
                format!("{} takes no nodes and no flags (set_mempolicy(2) refuses them): remove them, or pick a mode that uses nodes", mp.mode()),
            ))
        }
        M::MpolBind | M::MpolInterleave | M::MpolWeightedInterleave | M::MpolPreferredMany
            if nodes.is_empty() =>
        {
            return Err(err(".nodes", format!("{} needs at least one node", mp.mode())))
        }
        _ => {}
    }
    if flags.contains(&F::MpolFStaticNodes) && flags.contains(&F::MpolFRelativeNodes) {
        return Err(err(
            ".flags",
            "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other".into(),
        ));
    }
    Ok(())
}

/// set_mempolicy() with linux.memoryPolicy, for this process and all it
/// starts.
pub fn set_memory_policy(mp: &oci_spec::runtime::LinuxMemoryPolicy) -> Result<()> {
    explain::step(&catalog::MEMPOLICY, || mempolicy_text(mp));
    let nodes =
        mempolicy_nodes(mp).map_err(|r| Error::msg(format!("linux.memoryPolicy.nodes {r}")))?;
    let words = nodes
        .iter()
        .max()
        .map_or(0, |&m| m as usize / libc::c_ulong::BITS as usize + 1);
    let mut mask: Vec<libc::c_ulong> = vec![0; words];
    for n in nodes {
        let b = libc::c_ulong::BITS;
        mask[(n / b) as usize] |= 1 << (n % b);
    }
    super::syscall::set_mempolicy_self(mempolicy_bits(mp), &mask).map_err(|e| {
        Error::msg(format!(
            "set_mempolicy({}) for linux.memoryPolicy: {e} (a node this host does not have? see /sys/devices/system/node/online)",
            mempolicy_text(mp)
        ))
    })
}

/// The most entries a CPU or memory-node list may expand to.
const MAX_CPU_LIST: usize = 1 << 16;

/// Parse a cpuset list such as `0-2,4`; None when malformed (or expanding
/// to more than 65536 entries).
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',') {
        let part = part.trim();
        if part.is_empty() {
            return None;
        }
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
            if a > b || b - a > 65536 {
                return None;
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().ok()?);
        }
        // Many ranges could otherwise add up to billions of entries (a 4 MiB
        // config of "0-65535," repeated): no machine has more CPUs than this.
        if out.len() > MAX_CPU_LIST {
            return None;
        }
    }
    Some(out)
}

/// The CPUs of a list such as `0-1,3`.
pub fn cpu_set(field: &str, list: &str) -> Result<nix::sched::CpuSet> {
    let cpus = parse_cpu_list(list)
        .ok_or_else(|| Error::msg(format!("{field} {list:?} is not a CPU list such as 0-2,4")))?;
    let mut set = nix::sched::CpuSet::new();
    for c in cpus {
        set.set(c as usize).map_err(|_| {
            Error::msg(format!(
                "{field} {list:?}: CPU {c} is above the largest CPU number this runtime supports ({})",
                nix::sched::CpuSet::count() - 1
            ))
        })?;
    }
    Ok(set)
}

/// Set the CPU affinity of `pid` (0: this process) from a list such as `0-1,3`.
pub fn set_affinity(pid: i32, field: &str, list: &str) -> Result<()> {
    let set = cpu_set(field, list)?;
    explain::step(&catalog::CPU_AFFINITY, || {
        format!("sched_setaffinity({list})")
    });
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set).map_err(|e| {
        let hint = if e == nix::errno::Errno::EINVAL {
            " (none of these CPUs is online, or allowed by the container's cpuset)"
        } else {
            ""
        };
        Error::sys(format!("{field} {list:?}{hint}"), e)
    })
}

/// Let this process run on every CPU its cpuset allows (the kernel masks the
/// request with the cpuset), undoing an inherited affinity.
pub fn reset_affinity() {
    let mut set = nix::sched::CpuSet::new();
    for c in 0..nix::sched::CpuSet::count() {
        let _ = set.set(c);
    }
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
}

/// The CPU mask this process had before [`leave_cpu`]; put back on drop.
#[must_use = "the mask is restored when this is dropped"]
pub struct CpuLeft(nix::sched::CpuSet);

impl Drop for CpuLeft {
    fn drop(&mut self) {
        // The old mask was allowed a moment ago; a cpuset change since
        // would only narrow what the kernel applies.
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.0);
    }
}

/// Move this process off `child_cpu` (where its new child is, if known)
/// onto any other CPU it may use, until the returned guard is dropped.
/// `None` (nothing changed) when it runs elsewhere already, may use that
/// CPU only, or has no work (`overlap` false) to do beside the child's
/// start: then the move would only cost a migration.
///
/// Why: clone3 places the new child on its parent's CPU, and the scheduler
/// may leave it there, waiting, while the parent runs and another CPU
/// idles (on this project's 2-vCPU host it often did: the init's start
/// waited out the parent's state claim and cgroup setup). Moving the parent
/// lets both run at once. Nothing inherits the narrowed mask: the child
/// exists already, and the caller drops the guard before it spawns
/// anything (newuidmap, a hook).
pub fn leave_cpu(child_cpu: Option<usize>, overlap: bool) -> Option<CpuLeft> {
    let me = nix::unistd::Pid::from_raw(0);
    // SAFETY: sched_getcpu takes no arguments (vDSO; -1 on failure).
    let here = usize::try_from(unsafe { libc::sched_getcpu() }).ok();
    let move_to = match (child_cpu, here) {
        (Some(c), Some(h)) if c == h && overlap => {
            nix::sched::sched_getaffinity(me).ok().and_then(|old| {
                let mut others = old;
                others.unset(c).ok()?;
                (others != nix::sched::CpuSet::new()).then_some((old, others))
            })
        }
        _ => None,
    };
    explain::step(&catalog::CPU_LEAVE, || match (&move_to, child_cpu, here) {
        (Some(_), Some(c), _) => format!("sched_setaffinity(every allowed CPU but {c})"),
        _ if !overlap => "the state and the cgroup were made before the clone: no move".into(),
        (None, Some(c), Some(h)) if c == h => format!("both on CPU {c}, no other allowed"),
        (None, Some(c), Some(h)) => format!("child on CPU {c}, runtime on {h}: no move"),
        _ => "the child's CPU is not known: no move".into(),
    });
    let (old, others) = move_to?;
    nix::sched::sched_setaffinity(me, &others).ok()?;
    Some(CpuLeft(old))
}

/// The kernel's scheduling policy number of a spec policy, or why not.
fn policy_number(p: oci_spec::runtime::LinuxSchedulerPolicy) -> std::result::Result<u32, String> {
    use oci_spec::runtime::LinuxSchedulerPolicy as P;
    Ok(match p {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => return Err("SCHED_ISO is reserved but not implemented by Linux".into()),
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    })
}

fn sched_flag(f: oci_spec::runtime::LinuxSchedulerFlag) -> u64 {
    use oci_spec::runtime::LinuxSchedulerFlag as F;
    match f {
        F::SchedResetOnFork => 0x01,
        F::SchedFlagReclaim => 0x02,
        F::SchedFlagDLOverrun => 0x04,
        F::SchedFlagKeepPolicy => 0x08,
        F::SchedFlagKeepParams => 0x10,
        F::SchedFlagUtilClampMin => 0x20,
        F::SchedFlagUtilClampMax => 0x40,
    }
}

/// Check process.scheduler as runc does; errors are (field, reason).
pub fn check_scheduler(s: &oci_spec::runtime::Scheduler) -> crate::error::Checked {
    use oci_spec::runtime::LinuxSchedulerPolicy as P;
    let policy = s.policy();
    policy_number(*policy).map_err(|r| FieldError::new("policy", r))?;
    if let Some(n) = s.nice() {
        if !(-20..=19).contains(n) {
            return Err(FieldError::of(
                "nice".into(),
                format!("{n} is outside -20..19"),
            ));
        }
    }
    let rt = matches!(policy, P::SchedFifo | P::SchedRr);
    match s.priority() {
        Some(p) if rt && !(1..=99).contains(p) => {
            return Err(FieldError::of(
                "priority".into(),
                format!("{p} is outside 1..99 for {policy}"),
            ));
        }
        Some(p) if !rt && *p != 0 => {
            return Err(FieldError::of(
                "priority".into(),
                format!("{p}: only SCHED_FIFO and SCHED_RR take a priority, not {policy}"),
            ));
        }
        None if rt => {
            return Err(FieldError::of(
                "priority".into(),
                format!("{policy} needs a priority (1..99)"),
            ));
        }
        _ => {}
    }
    let dl = [s.runtime(), s.deadline(), s.period()];
    if *policy != P::SchedDeadline {
        if dl.iter().any(|v| v.is_some_and(|v| v != 0)) {
            return Err(FieldError::of(
                "runtime".into(),
                format!("runtime, deadline and period are for SCHED_DEADLINE only, not {policy}"),
            ));
        }
    } else {
        let (r, d, p) = (
            s.runtime().unwrap_or(0),
            s.deadline().unwrap_or(0),
            s.period().unwrap_or(0),
        );
        if r == 0 || d == 0 {
            return Err(FieldError::of(
                "runtime".into(),
                "SCHED_DEADLINE needs a runtime and a deadline (nanoseconds)".into(),
            ));
        }
        if r > d || (p != 0 && d > p) {
            return Err(FieldError::of(
                "deadline".into(),
                format!("runtime {r} <= deadline {d} <= period {p} must hold"),
            ));
        }
    }
    Ok(())
}

use super::syscall::SchedAttr;

/// Apply process.scheduler with sched_setattr(2) (policy, nice, priority,
/// flags and the SCHED_DEADLINE parameters in one call).
pub fn set_scheduler(s: &oci_spec::runtime::Scheduler) -> Result<()> {
    let policy = policy_number(*s.policy())
        .map_err(|r| Error::msg(format!("process.scheduler.policy: {r}")))?;
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags: s
            .flags()
            .iter()
            .flatten()
            .map(|f| sched_flag(*f))
            .fold(0, |a, b| a | b),
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    explain::step(&catalog::SCHEDULER, || {
        format!(
            "sched_setattr(policy {}, nice {}, priority {})",
            s.policy(),
            attr.nice,
            attr.priority
        )
    });
    if let Err(e) = super::syscall::sched_setattr_self(&attr) {
        let hint = match e {
            nix::errno::Errno::EPERM if policy == 1 || policy == 2 => {
                " (a real-time policy needs CAP_SYS_NICE and, with cgroup v1 real-time group scheduling, linux.resources.cpu.realtimeRuntime for the container's cgroup)"
            }
            nix::errno::Errno::EPERM => " (needs CAP_SYS_NICE)",
            nix::errno::Errno::EBUSY if policy == 6 => {
                " (the deadline bandwidth is not available on these CPUs)"
            }
            _ => "",
        };
        return Err(Error::sys(
            format!("process.scheduler ({}){hint}", s.policy()),
            e,
        ));
    }
    Ok(())
}

/// linux.personality: no flags (the runtime spec defines none).
pub fn check_personality(linux: &oci_spec::runtime::Linux) -> crate::error::Checked {
    match linux.personality() {
        Some(p) if p.flags().as_ref().is_some_and(|f| !f.is_empty()) => {
            Err(crate::error::FieldError::new(
                "linux.personality.flags",
                "no personality flags are defined by the runtime spec; remove them",
            ))
        }
        _ => Ok(()),
    }
}
