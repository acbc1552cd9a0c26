//! seccomp: compile linux.seccomp into a BPF filter with libseccomp and load it
//! as the last step before execve. With the NOTIFY action, the listener's
//! descriptor is sent to `listenerPath` with the container's state, as runc does.
//!
//! The runtime compiles in the parent, before anything is created, through
//! [`cache`]: a profile seen before is not compiled again. The child only
//! loads the bytes it is sent ([`Prepared`]).

pub mod cache;

use crate::error::{Error, FieldError, Result};
use crate::explain::{self, catalog};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::str::FromStr;

/// A compiled filter, ready to load: BPF instructions and seccomp(2) flags.
/// libseccomp compiles; the load is a plain seccomp(2) call, so every filter
/// flag of the kernel (including WAIT_KILLABLE_RECV, which libseccomp 2.5 does
/// not know) can be passed. Made by the parent, sent to the child in its
/// init request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    /// The program: an array of struct sock_filter (hex in the request).
    #[serde(with = "hex")]
    bpf: Vec<u8>,
    flags: libc::c_ulong,
    /// Some rule uses SCMP_ACT_NOTIFY.
    pub notify: bool,
    /// Number of rules added (for narration).
    pub rules: usize,
    /// The default action's name.
    pub default: String,
    /// linux.seccomp.listenerMetadata, sent to the listener with the state.
    pub listener_metadata: String,
}

/// What libseccomp made of a profile: the part of [`Prepared`] the cache
/// keeps (the rest comes from the profile itself, see [`load_params`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The BPF program (struct sock_filter array).
    pub bpf: Vec<u8>,
    /// Rules added.
    pub rules: usize,
    /// Syscall names this libseccomp does not know (skipped, warned about).
    pub unknown: Vec<String>,
}

/// Bytes as lowercase hex in JSON (the sync channel's format), where a
/// `Vec<u8>` would be an array of numbers three times the size.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(b))
    }

    pub fn encode(b: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let out: Vec<u8> = b
            .iter()
            .flat_map(|&x| [DIGITS[(x >> 4) as usize], DIGITS[(x & 15) as usize]])
            .collect();
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        decode(s.as_bytes()).ok_or_else(|| serde::de::Error::custom("invalid hex in bpf"))
    }

    pub fn decode(s: &[u8]) -> Option<Vec<u8>> {
        let nib = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        if !s.len().is_multiple_of(2) {
            return None;
        }
        s.chunks(2)
            .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
            .collect()
    }
}

/// The libseccomp action; `errno` is the errnoRet given with it (EPERM when
/// absent, for the default action and for rules alike, as the spec says).
fn action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    let default_errno = libc::EPERM as u32;
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.unwrap_or(default_errno) as i32)
        }
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.unwrap_or(default_errno) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    }
}

fn op(o: LinuxSeccompOperator, mask: u64) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(mask),
    }
}

const FLAG_TSYNC: libc::c_ulong = libc::SECCOMP_FILTER_FLAG_TSYNC;
const FLAG_LOG: libc::c_ulong = libc::SECCOMP_FILTER_FLAG_LOG;
const FLAG_SPEC_ALLOW: libc::c_ulong = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
const FLAG_NEW_LISTENER: libc::c_ulong = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
const FLAG_TSYNC_ESRCH: libc::c_ulong = libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
const FLAG_WAIT_KILLABLE_RECV: libc::c_ulong = libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;

/// Every action of the runtime spec, in name order: [`action`] maps each
/// (its match is exhaustive, so an action oci-spec adds fails to build here).
pub const ACTIONS: [LinuxSeccompAction; 9] = [
    LinuxSeccompAction::ScmpActAllow,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActNotify,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActTrap,
];

/// Every argument operator, in name order, each mapped by [`op`].
pub const OPERATORS: [LinuxSeccompOperator; 7] = [
    LinuxSeccompOperator::ScmpCmpEq,
    LinuxSeccompOperator::ScmpCmpGe,
    LinuxSeccompOperator::ScmpCmpGt,
    LinuxSeccompOperator::ScmpCmpLe,
    LinuxSeccompOperator::ScmpCmpLt,
    LinuxSeccompOperator::ScmpCmpMaskedEq,
    LinuxSeccompOperator::ScmpCmpNe,
];

/// The architectures a filter built here can cover: the x86-64 host's own
/// and the two ABIs its kernel also runs.
pub const ARCHS: [oci_spec::runtime::Arch; 3] = [
    oci_spec::runtime::Arch::ScmpArchX86,
    oci_spec::runtime::Arch::ScmpArchX86_64,
    oci_spec::runtime::Arch::ScmpArchX32,
];

/// Filter flags of linux.seccomp.flags, with the kernel release that added
/// each (the features document's supportedFlags are those this kernel has).
pub const FILTER_FLAGS: [(LinuxSeccompFilterFlag, (u32, u32)); 4] = [
    (LinuxSeccompFilterFlag::SeccompFilterFlagTsync, (3, 17)),
    (LinuxSeccompFilterFlag::SeccompFilterFlagLog, (4, 14)),
    (LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow, (4, 17)),
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
        (5, 19),
    ),
];

/// The seccomp(2) bit of a filter flag.
fn flag_bit(f: LinuxSeccompFilterFlag) -> libc::c_ulong {
    match f {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
    }
}

/// The spec's name of a value (its JSON string).
pub fn spec_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// The largest errno a syscall can return (MAX_ERRNO).
const MAX_ERRNO: u32 = 4095;

/// Check a profile before anything is created. Errors are (field below
/// `linux.seccomp`, reason). The rules are runc's: NOTIFY is never the default
/// action, never intercepts `write` (the runtime needs it to report errors
/// after the filter is loaded), and needs a listener.
pub fn validate(s: &LinuxSeccomp) -> crate::error::Checked {
    if s.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(FieldError::of(
            "defaultAction".into(),
            "SCMP_ACT_NOTIFY cannot be used as the default action".into(),
        ));
    }
    if let Some(e) = s.default_errno_ret() {
        if !takes_errno(s.default_action()) {
            return Err(FieldError::of(
                "defaultErrnoRet".into(),
                format!(
                    "{e}: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno, not {}",
                    action_name(s.default_action())
                ),
            ));
        }
        if e > MAX_ERRNO {
            return Err(FieldError::of(
                "defaultErrnoRet".into(),
                format!("{e} is above the largest errno ({MAX_ERRNO})"),
            ));
        }
    }
    for (i, a) in s.architectures().iter().flatten().enumerate() {
        let name = arch_name(a);
        if ScmpArch::from_str(&name).is_err() {
            return Err(FieldError::of(
                format!("architectures[{i}]"),
                format!("{name:?} is not an architecture libseccomp knows"),
            ));
        }
    }
    let mut notify = false;
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        if let (Some(e), false) = (sc.errno_ret(), takes_errno(sc.action())) {
            return Err(FieldError::of(
                format!("syscalls[{i}].errnoRet"),
                format!(
                    "{e}: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno, not {}",
                    action_name(sc.action())
                ),
            ));
        }
        match (sc.action(), sc.errno_ret()) {
            (LinuxSeccompAction::ScmpActErrno, Some(e)) if e > MAX_ERRNO => {
                return Err(FieldError::of(
                    format!("syscalls[{i}].errnoRet"),
                    format!("{e} is above the largest errno ({MAX_ERRNO})"),
                ))
            }
            (LinuxSeccompAction::ScmpActTrace, Some(e)) if e > u16::MAX as u32 => {
                return Err(FieldError::of(
                    format!("syscalls[{i}].errnoRet"),
                    format!("{e} does not fit the 16-bit SCMP_ACT_TRACE message"),
                ))
            }
            (LinuxSeccompAction::ScmpActNotify, _) => {
                notify = true;
                if sc.names().iter().any(|n| n == "write") {
                    return Err(FieldError::of(
                        format!("syscalls[{i}].names"),
                        "SCMP_ACT_NOTIFY cannot be used for the write syscall".into(),
                    ));
                }
            }
            _ => {}
        }
        for (j, a) in sc.args().iter().flatten().enumerate() {
            if a.index() >= 6 {
                return Err(FieldError::of(
                    format!("syscalls[{i}].args[{j}].index"),
                    format!("{}: syscalls have at most 6 arguments (0..5)", a.index()),
                ));
            }
        }
    }
    match s.listener_path() {
        Some(p) if !p.as_os_str().is_empty() && !p.is_absolute() => {
            return Err(FieldError::of(
                "listenerPath".into(),
                format!("{} is not an absolute path", p.display()),
            ))
        }
        None if notify => {
            return Err(FieldError::of(
                "listenerPath".into(),
                "missing: a rule uses SCMP_ACT_NOTIFY, which needs a listener (a unix socket path)"
                    .into(),
            ))
        }
        _ => {}
    }
    Ok(())
}

fn takes_errno(a: LinuxSeccompAction) -> bool {
    matches!(
        a,
        LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
    )
}

fn action_name(a: LinuxSeccompAction) -> String {
    spec_name(&a)
}

fn arch_name(a: &oci_spec::runtime::Arch) -> String {
    spec_name(a)
}

/// Compile the profile without the cache (see [`cache::prepare`] for the
/// runtime's way). Unknown syscall names are skipped with a warning.
pub fn prepare(s: &LinuxSeccomp) -> Result<Prepared> {
    let c = compile(s)?;
    warn_unknown(&c.unknown);
    Ok(assemble(s, c))
}

/// A [`Prepared`] from what libseccomp compiled and the profile's own
/// fields (flags, notify, metadata), which need no libseccomp.
fn assemble(s: &LinuxSeccomp, c: Compiled) -> Prepared {
    let (flags, notify) = load_params(s);
    Prepared {
        bpf: c.bpf,
        flags,
        notify,
        rules: c.rules,
        default: format!("{:?}", s.default_action()),
        listener_metadata: s.listener_metadata().clone().unwrap_or_default(),
    }
}

/// One warning for every name libseccomp did not know (newer syscalls,
/// typos): skipped, as runc does.
fn warn_unknown(unknown: &[String]) {
    if !unknown.is_empty() {
        crate::logging::warn(|| {
            format!(
                "linux.seccomp: syscalls unknown to libseccomp {} skipped: {}",
                library_version(),
                unknown.join(", ")
            )
        });
    }
}

/// The seccomp(2) flags of the load and whether a listener is asked for.
fn load_params(s: &LinuxSeccomp) -> (libc::c_ulong, bool) {
    let mut flags: libc::c_ulong = 0;
    let mut wait_killable_recv = false;
    for &f in s.flags().iter().flatten() {
        if f == LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv {
            // Only meaningful with a listener: added below when there is one.
            wait_killable_recv = true;
        } else {
            flags |= flag_bit(f);
        }
    }
    let def = action(s.default_action(), s.default_errno_ret());
    let notify = s.default_action() == LinuxSeccompAction::ScmpActNotify
        || s.syscalls().iter().flatten().any(|sc| {
            sc.action() == LinuxSeccompAction::ScmpActNotify
                && action(sc.action(), sc.errno_ret()) != def
        });
    if notify {
        flags |= FLAG_NEW_LISTENER;
        if flags & FLAG_TSYNC != 0 {
            // TSYNC and a listener are exclusive unless a failed sync reports ESRCH.
            flags |= FLAG_TSYNC_ESRCH;
        }
        if wait_killable_recv {
            flags |= flag_bit(LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv);
        }
    } else if wait_killable_recv {
        crate::logging::warn(|| {
            "linux.seccomp.flags SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV has no effect without an SCMP_ACT_NOTIFY rule".into()
        });
    }
    (flags, notify)
}

/// Compile the profile to BPF with libseccomp: the costly part, which the
/// cache saves.
pub fn compile(s: &LinuxSeccomp) -> Result<Compiled> {
    compile_as(s, true)
}

/// [`compile`], with the binary tree for large profiles or (`tree` false,
/// for the tests that compare both) always linear.
fn compile_as(s: &LinuxSeccomp, tree: bool) -> Result<Compiled> {
    let def = action(s.default_action(), s.default_errno_ret());
    let mut ctx = ScmpFilterContext::new_filter(def)
        .map_err(|e| Error::msg(format!("linux.seccomp: create filter: {e}")))?;
    // Never let libseccomp set no_new_privs behind the config's back.
    ctx.set_ctl_nnp(false)
        .map_err(|e| Error::msg(format!("linux.seccomp: {e}")))?;
    for (i, a) in s.architectures().iter().flatten().enumerate() {
        let name = arch_name(a);
        let arch = ScmpArch::from_str(&name).map_err(|_| {
            Error::msg(format!(
                "linux.seccomp.architectures[{i}]: {name:?} is unknown"
            ))
        })?;
        ctx.add_arch(arch)
            .map_err(|e| Error::msg(format!("linux.seccomp.architectures[{i}] {name}: {e}")))?;
    }
    let mut rules = 0;
    let mut unknown: Vec<String> = Vec::new();
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let act = action(sc.action(), sc.errno_ret());
        if act == def {
            // libseccomp refuses rules equal to the default action; runc skips them too.
            continue;
        }
        let args = sc.args().clone().unwrap_or_default();
        let mut counts = [0usize; 6];
        for a in &args {
            if a.index() >= 6 {
                return Err(Error::msg(format!(
                    "linux.seccomp.syscalls[{i}].args: index {} is above 5",
                    a.index()
                )));
            }
            counts[a.index()] += 1;
        }
        let cmps: Vec<ScmpArgCompare> = args
            .iter()
            .map(|a| {
                let (mask, val) = if a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq {
                    (a.value(), a.value_two().unwrap_or(0))
                } else {
                    (0, a.value())
                };
                ScmpArgCompare::new(a.index() as u32, op(a.op(), mask), val)
            })
            .collect();
        for name in sc.names() {
            let Ok(sys) = ScmpSyscall::from_name(name) else {
                if !unknown.contains(name) {
                    unknown.push(name.clone());
                }
                continue;
            };
            let r = if cmps.is_empty() {
                ctx.add_rule(act, sys)
            } else if counts.iter().all(|c| *c <= 1) {
                ctx.add_rule_conditional(act, sys, &cmps)
            } else {
                // Two conditions on one argument cannot be ANDed: one rule each (runc's way).
                cmps.iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, sys, &[*c]))
            };
            r.map_err(|e| Error::msg(format!("linux.seccomp.syscalls[{i}] {name}: {e}")))?;
            rules += 1;
        }
    }
    if tree && rules > BINARY_TREE_FROM {
        // A binary search on the syscall number instead of one test after
        // another: the same decisions, reached in O(log n). The kernel's
        // load (which emulates the program for every syscall number to
        // find the always-allowed ones) and every syscall of the container
        // get cheaper: for Podman's profile the load drops from about 1.0
        // to 0.4 ms. As runc, not for small profiles (libseccomp before
        // 2.5.4 ignores the default action of a tree with no rules); a
        // libseccomp without the option keeps the linear program.
        let _ = ctx.set_ctl_optimize(2);
    }
    let bpf = export(&ctx)?;
    check_size(&bpf)?;
    Ok(Compiled {
        bpf,
        rules,
        unknown,
    })
}

/// A program the kernel would refuse for its length is refused here, with
/// what to do about it.
fn check_size(bpf: &[u8]) -> Result<()> {
    let insns = bpf.len() / INSN;
    if insns > MAX_INSNS {
        return Err(Error::msg(format!(
            "linux.seccomp: the compiled filter has {insns} BPF instructions, above the kernel's limit of {MAX_INSNS}; merge rules or shorten the profile"
        )));
    }
    Ok(())
}

/// More rules than this compile to a binary tree (see [`compile`]).
const BINARY_TREE_FROM: usize = 32;

/// The size of one BPF instruction (struct sock_filter).
const INSN: usize = std::mem::size_of::<libc::sock_filter>();

impl Prepared {
    /// Load the filter into this process. Returns the notify descriptor when
    /// some rule uses SCMP_ACT_NOTIFY.
    pub fn load(&self) -> Result<Option<i32>> {
        explain::step(&catalog::SECCOMP, || {
            format!("{} rules, default action {}", self.rules, self.default)
        });
        let r = super::syscall::seccomp_set_mode_filter(self.flags, &self.bpf);
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let hint = if e == nix::errno::Errno::EACCES {
                    " (loading a filter needs CAP_SYS_ADMIN or no_new_privs)"
                } else if e == nix::errno::Errno::EINVAL {
                    " (a filter flag is not supported by this kernel)"
                } else {
                    ""
                };
                return Err(Error::msg(format!("linux.seccomp: load filter: {e}{hint}")));
            }
        };
        Ok(self.notify.then_some(r as i32))
    }
}

/// The filter as BPF bytes (an array of struct sock_filter).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>> {
    use std::io::{Read, Seek};
    let fd = nix::sys::memfd::memfd_create(c"nk-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| Error::sys("memfd for the seccomp program", e))?;
    let mut f = std::fs::File::from(fd);
    ctx.export_bpf(&mut f)
        .map_err(|e| Error::msg(format!("linux.seccomp: export BPF: {e}")))?;
    let mut out = Vec::new();
    f.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut out))
        .map_err(|e| Error::msg(format!("linux.seccomp: read BPF: {e}")))?;
    Ok(out)
}

/// Send the notify descriptor and the container process state to a listener
/// (runc's seccomp agent protocol: one JSON `ContainerProcessState` message
/// with the descriptor attached by SCM_RIGHTS). `pid` is the filtered
/// process as the host sees it.
pub fn send_to_listener(
    sock: BorrowedFd<'_>,
    notify_fd: i32,
    pid: i32,
    state: &oci_spec::runtime::State,
    metadata: &str,
) -> Result<()> {
    let mut msg = oci_spec::runtime::ContainerProcessState::default();
    msg.set_version(crate::OCI_VERSION.to_string())
        .set_fds(vec![oci_spec::runtime::SECCOMP_FD_NAME.to_string()])
        .set_pid(pid)
        .set_metadata((!metadata.is_empty()).then(|| metadata.to_string()))
        .set_state(state.clone());
    let data = serde_json::to_vec(&msg).unwrap_or_default();
    let fds = [notify_fd];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(&data)];
    nix::sys::socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| {
        Error::sys(
            "send the seccomp notify fd to linux.seccomp.listenerPath",
            e,
        )
    })?;
    Ok(())
}

/// The libseccomp version linked in (for `--version`).
pub fn library_version() -> String {
    match libseccomp::ScmpVersion::current() {
        Ok(v) => format!("{}.{}.{}", v.major, v.minor, v.micro),
        Err(_) => "unknown".into(),
    }
}

/// linux.seccomp: a profile this runtime can compile and load.
pub fn check(linux: &oci_spec::runtime::Linux) -> crate::error::Checked {
    match linux.seccomp() {
        Some(sc) => validate(sc).map_err(|e| e.under("linux.seccomp")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_action_and_operator_compiles() {
        let mut rules = Vec::new();
        for (i, act) in [
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_TRAP",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_TRACE",
            "SCMP_ACT_LOG",
            "SCMP_ACT_NOTIFY",
        ]
        .iter()
        .enumerate()
        {
            rules.push(format!(
                r#"{{"names":["getpgid"],"action":"{act}","args":[{{"index":0,"op":"SCMP_CMP_EQ","value":{i}}}]}}"#
            ));
        }
        for (i, op) in ["NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ"]
            .iter()
            .enumerate()
        {
            rules.push(format!(
                r#"{{"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":{},"args":[{{"index":{},"op":"SCMP_CMP_{op}","value":7,"valueTwo":3}}]}}"#,
                i + 1,
                i % 6
            ));
        }
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/l","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],"flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],"syscalls":[{}]}}"#,
            rules.join(",")
        ));
        validate(&p).unwrap();
        let c = prepare(&p).unwrap();
        assert!(c.notify);
        assert_eq!(
            c.flags,
            FLAG_LOG | FLAG_SPEC_ALLOW | FLAG_NEW_LISTENER | FLAG_WAIT_KILLABLE_RECV
        );
        assert_eq!(c.rules, 15);
        assert!(!c.bpf.is_empty());
    }

    /// Jumps on "greater than" or "greater or equal" against a syscall
    /// number: what a binary search is made of. A profile without argument
    /// conditions has none in the linear layout (only the x32 check, against
    /// 0x40000000).
    fn range_jumps(bpf: &[u8]) -> usize {
        const JGT_K: u16 = 0x25;
        const JGE_K: u16 = 0x35;
        bpf.chunks(INSN)
            .filter(|i| {
                let code = u16::from_ne_bytes([i[0], i[1]]);
                let k = u32::from_ne_bytes([i[4], i[5], i[6], i[7]]);
                [JGT_K, JGE_K].contains(&code) && k < 0x4000_0000
            })
            .count()
    }

    #[test]
    fn large_profiles_compile_to_a_binary_tree() {
        let names = |n: usize| -> Vec<String> {
            [
                "read",
                "write",
                "close",
                "fstat",
                "lseek",
                "mmap",
                "mprotect",
                "munmap",
                "brk",
                "rt_sigaction",
                "rt_sigprocmask",
                "ioctl",
                "pread64",
                "pwrite64",
                "readv",
                "writev",
                "access",
                "pipe",
                "select",
                "sched_yield",
                "mremap",
                "msync",
                "mincore",
                "madvise",
                "shmget",
                "shmat",
                "shmctl",
                "dup",
                "dup2",
                "pause",
                "nanosleep",
                "getitimer",
                "alarm",
                "setitimer",
                "getpid",
                "sendfile",
                "socket",
                "connect",
                "accept",
                "sendto",
            ]
            .iter()
            .take(n)
            .map(|s| s.to_string())
            .collect()
        };
        for (n, tree) in [(8, false), (BINARY_TREE_FROM, false), (40, true)] {
            let p: LinuxSeccomp = serde_json::from_value(serde_json::json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": names(n), "action": "SCMP_ACT_ALLOW"}]
            }))
            .unwrap();
            let c = compile(&p).unwrap();
            assert_eq!(c.rules, n);
            assert_eq!(range_jumps(&c.bpf) > 0, tree, "{n} rules");
        }
    }

    type Insn = (u16, u8, u8, u32);

    fn decode(bpf: &[u8]) -> Vec<Insn> {
        bpf.chunks(INSN)
            .map(|i| {
                (
                    u16::from_ne_bytes([i[0], i[1]]),
                    i[2],
                    i[3],
                    u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
                )
            })
            .collect()
    }

    /// What a seccomp program returns for one call: a classic BPF
    /// interpreter for the instructions libseccomp emits, run on a struct
    /// seccomp_data (nr, arch, instruction pointer, six arguments).
    fn run_bpf(insns: &[Insn], nr: u32, arch: u32, args: &[u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
        loop {
            let (code, jt, jf, k) = insns[pc];
            pc += 1;
            let jump = |cond: bool| if cond { jt as usize } else { jf as usize };
            match code {
                0x20 => {
                    let o = k as usize;
                    a = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
                }
                0x00 => a = k,
                0x60 => a = mem[k as usize],
                0x01 => x = k,
                0x61 => x = mem[k as usize],
                0x02 => mem[k as usize] = a,
                0x03 => mem[k as usize] = x,
                0x54 => a &= k,
                0x44 => a |= k,
                0x07 => x = a,
                0x87 => a = x,
                0x05 => pc += k as usize,
                0x15 => pc += jump(a == k),
                0x25 => pc += jump(a > k),
                0x35 => pc += jump(a >= k),
                0x45 => pc += jump(a & k != 0),
                0x1d => pc += jump(a == x),
                0x2d => pc += jump(a > x),
                0x3d => pc += jump(a >= x),
                0x06 => return k,
                0x16 => return a,
                other => panic!("instruction {other:#x} at {} not interpreted", pc - 1),
            }
        }
    }

    /// The binary tree decides every call as the linear program does, on
    /// the profiles Docker and Podman send: every syscall number of the
    /// three x86 ABIs, with arguments that hit and miss the profiles'
    /// argument rules.
    #[test]
    fn the_binary_tree_decides_as_the_linear_program() {
        const X86_64: u32 = 0xc000_003e;
        const I386: u32 = 0x4000_0003;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/fixtures");
        for fixture in ["docker.json", "podman.json"] {
            let c: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join(fixture)).unwrap()).unwrap();
            let p: LinuxSeccomp = serde_json::from_value(c["linux"]["seccomp"].clone()).unwrap();
            let tree = compile_as(&p, true).unwrap().bpf;
            let linear = compile_as(&p, false).unwrap().bpf;
            assert!(
                range_jumps(&tree) > 0 && range_jumps(&linear) == 0,
                "{fixture}"
            );
            let (tree, linear) = (decode(&tree), decode(&linear));
            let mut calls = 0;
            let mut answers = std::collections::BTreeSet::new();
            for (arch, base) in [(X86_64, 0), (X86_64, 0x4000_0000), (I386, 0)] {
                for nr in 0..512u32 {
                    for v in [
                        0u64,
                        1,
                        8,
                        0x2_0000,
                        0x2_0008,
                        0xffff_ffff,
                        0x7e02_0000,
                        u64::MAX,
                    ] {
                        let args = [v, v, v, v, v, v];
                        answers.insert(run_bpf(&linear, base + nr, arch, &args));
                        assert_eq!(
                            run_bpf(&tree, base + nr, arch, &args),
                            run_bpf(&linear, base + nr, arch, &args),
                            "{fixture}: arch {arch:#x} nr {} args {v:#x}",
                            base + nr
                        );
                        calls += 1;
                    }
                }
            }
            assert_eq!(calls, 3 * 512 * 8);
            // Allowed, refused with EPERM, ENOSYS for clone3, killed for
            // another ABI: the programs were really told apart.
            assert!(answers.len() >= 3, "{fixture}: {answers:x?}");
        }
    }

    #[test]
    fn unknown_names_are_skipped() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["nk_no_such_call","read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        assert_eq!(prepare(&p).unwrap().rules, 1);
    }

    #[test]
    fn rules_equal_to_the_default_are_skipped() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO"},{"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
        );
        assert_eq!(prepare(&p).unwrap().rules, 1);
    }

    #[test]
    fn refused_profiles_name_the_field() {
        for (json, field) in [
            (
                r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/l"}"#,
                "defaultAction",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/l","syscalls":[{"names":["write"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "syscalls[0].names",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "listenerPath",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"rel","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "listenerPath",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"op":"SCMP_CMP_EQ","value":1}]}]}"#,
                "syscalls[0].args[0].index",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":5000}]}"#,
                "syscalls[0].errnoRet",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_LOG","errnoRet":1}]}"#,
                "syscalls[0].errnoRet",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":1}"#,
                "defaultErrnoRet",
            ),
        ] {
            let FieldError { field: f, reason } = validate(&profile(json)).unwrap_err();
            assert_eq!(f, field, "{json}: {reason}");
        }
    }
}
