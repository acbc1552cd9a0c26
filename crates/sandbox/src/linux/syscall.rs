//! Raw system calls: the one home for every call nix does not wrap, one safe
//! wrapper each (crun's `syscalls.h` is the model). Everywhere else the
//! runtime uses nix's wrappers. None of these allocates or takes a lock, so
//! the clone3 child (process/clone.rs), which may only make
//! async-signal-safe calls, uses them too.
//!
//! The host probes `nk-runtime check` renders ([`probe_pidfd`],
//! [`probe_clone3`], [`probe_openat2`]) live here as well: they ask the
//! kernel through the same wrappers the runtime relies on.

use nix::errno::Errno;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The kernel's `struct sigaction` on x86_64 (not glibc's, which is larger).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Set signal `sig`'s action to SIG_DFL. Raw, because glibc's sigaction
/// refuses the real-time signals it reserves (32 and 33), which a parent
/// can still have left ignored.
pub fn rt_sigaction_default(sig: i32) -> nix::Result<()> {
    let act = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: act is a valid kernel sigaction that lives for the call; no old
    // action is asked for; the size is that of the kernel's sigset.
    check(unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            std::mem::size_of::<u64>(),
        )
    })
    .map(drop)
}

/// The result of a raw syscall: -1 means errno is set.
fn check(r: libc::c_long) -> nix::Result<libc::c_long> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// A descriptor a syscall just returned (or its errno).
fn new_fd(r: libc::c_long) -> nix::Result<OwnedFd> {
    let fd = check(r)? as RawFd;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// pidfd_open(2): a descriptor for `pid`, to signal and wait on exactly that
/// process (Linux 5.3).
pub fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no memory.
    new_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// pidfd_send_signal(2) without siginfo: `sig` goes to the process the pidfd
/// names, never to a recycled pid (Linux 5.1).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> nix::Result<()> {
    // SAFETY: a descriptor, a signal number, a null siginfo and no flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// open_tree(2)'s flag for a detached copy of the tree.
pub const OPEN_TREE_CLONE: libc::c_uint = 1;

/// open_tree(2): a descriptor of the mount at `path` (relative to `dirfd`,
/// or the working directory when None); with [`OPEN_TREE_CLONE`], a detached
/// copy (Linux 5.2).
pub fn open_tree(
    dirfd: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: libc::c_uint,
) -> nix::Result<OwnedFd> {
    let dirfd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: open_tree reads the NUL-terminated path, which outlives the call.
    new_fd(unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) })
}

/// move_mount(2)'s flags: the source and target are the descriptors themselves.
pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
pub const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// move_mount(2) of the detached tree `from` onto the (O_PATH) `to`
/// (Linux 5.2).
pub fn move_mount(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: two descriptors and two static empty paths.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// The kernel's `struct mount_attr` (mount_setattr(2)).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// mount_setattr(2) of the mount at `path` relative to `dirfd` (the working
/// directory when None), plus `flags` such as AT_RECURSIVE or
/// AT_SYMLINK_NOFOLLOW; an empty path means the mount `dirfd` itself
/// (AT_EMPTY_PATH) (Linux 5.12).
pub fn mount_setattr(
    dirfd: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: libc::c_uint,
    attr: &MountAttr,
) -> nix::Result<()> {
    let dirfd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let empty = if path.is_empty() {
        libc::AT_EMPTY_PATH as libc::c_uint
    } else {
        0
    };
    // SAFETY: mount_setattr reads `attr` (which outlives the call, its size
    // given) and the NUL-terminated path, which outlives the call too.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            empty | flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// finit_module(2) with no parameters: load a kernel module from an open
/// file (the VM guest's agent loads its virtio modules so).
pub fn finit_module(module: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: finit_module takes a descriptor, a NUL-terminated parameter
    // string that outlives the call, and flags.
    check(unsafe { libc::syscall(libc::SYS_finit_module, module.as_raw_fd(), c"".as_ptr(), 0) })
        .map(drop)
}

/// close_range(2) from `first` to `last`; with CLOSE_RANGE_CLOEXEC the
/// descriptors stay open and only become close-on-exec (Linux 5.9/5.11).
pub fn close_range(first: u32, last: u32, flags: libc::c_uint) -> nix::Result<()> {
    // SAFETY: close_range takes numbers only; closing descriptors this
    // process owns elsewhere is the caller's choice, as with close(2).
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) }).map(drop)
}

/// The kernel's `struct clone_args` (clone3(2)), version 2 (with cgroup).
#[repr(C)]
#[derive(Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// The raw clone3(2) call: the child's pid in the parent, 0 in the child,
/// -1 with errno set on failure (a plain syscall, so the intermediate
/// process may call it between fork-like steps). It cannot be a safe
/// wrapper: the child runs on from here.
///
/// # Safety
/// As with fork: after it returns 0 the child may only make
/// async-signal-safe calls until it execs or exits, and every pointer in
/// `args` must stay valid for the call.
pub unsafe fn clone3(args: &mut CloneArgs) -> libc::c_long {
    // SAFETY: the caller upholds the contract above; the size is that of the
    // struct passed.
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

/// clone3(2) whose child starts on its own stack (`args.stack`,
/// `args.stack_size`) in `child(arg)`, which never returns: what
/// CLONE_VM|CLONE_VFORK needs, since the child then shares the caller's
/// memory and must not return into the caller's frames. Returns the child's
/// pid, or a negative errno (the raw system call: errno is not set).
///
/// # Safety
/// The stack must be writable and stay valid until the child execs or
/// exits (with CLONE_VFORK the caller is suspended until then); `child` may
/// only make async-signal-safe calls; every pointer in `args` must stay
/// valid for the call.
#[cfg(target_arch = "x86_64")]
pub unsafe fn clone3_on_stack(
    args: &mut CloneArgs,
    child: unsafe extern "C" fn(*mut libc::c_void) -> !,
    arg: *mut libc::c_void,
) -> libc::c_long {
    let ret: libc::c_long;
    // SAFETY: the caller upholds the contract above. The parent leaves the
    // block with the syscall's result in rax (rcx and r11 are clobbered by
    // `syscall`, every other register is preserved). The child, whose rsp
    // the kernel set to the top of the given stack (16-byte aligned, so the
    // call leaves the callee's frame aligned as the ABI wants), clears the
    // frame pointer and calls `child(arg)`, which never returns.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") child,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// execveat(2) of the file `fd` itself (AT_EMPTY_PATH); returns only on
/// failure, with errno set.
///
/// # Safety
/// `argv` and `envp` must be NULL-terminated arrays of NUL-terminated
/// strings that stay valid for the call.
pub unsafe fn execveat_fd(
    fd: RawFd,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> libc::c_long {
    // SAFETY: the caller upholds the contract above; the path is a static
    // empty string.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv,
            envp,
            libc::AT_EMPTY_PATH,
        )
    }
}

/// keyctl(2) KEYCTL_JOIN_SESSION_KEYRING: join (creating it) the session
/// keyring `name`; returns its serial.
pub fn keyctl_join_session_keyring(name: &CStr) -> nix::Result<i64> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl reads a NUL-terminated name that outlives the call.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) })
}

/// keyctl(2) KEYCTL_DESCRIBE of key `id` into `buf`; returns the length of
/// the description (which may exceed `buf`, then cut there).
pub fn keyctl_describe(id: i64, buf: &mut [u8]) -> nix::Result<usize> {
    const KEYCTL_DESCRIBE: libc::c_long = 6;
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    check(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_DESCRIBE,
            id,
            buf.as_mut_ptr(),
            buf.len(),
        )
    })
    .map(|n| n as usize)
}

/// keyctl(2) KEYCTL_SETPERM of key `id`.
pub fn keyctl_setperm(id: i64, perm: u32) -> nix::Result<()> {
    const KEYCTL_SETPERM: libc::c_long = 5;
    // SAFETY: integers only.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, id, perm) }).map(drop)
}

/// ioprio_set(2) of this process (IOPRIO_WHO_PROCESS, pid 0).
pub fn ioprio_set_self(value: i32) -> nix::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: integers only.
    check(unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) }).map(drop)
}

/// set_mempolicy(2) of this thread (inherited by its children and kept
/// across execve): `mode` with its flags or'ed in, `nodes` a bitmask of
/// memory nodes (empty: none given).
pub fn set_mempolicy_self(mode: i32, nodes: &[libc::c_ulong]) -> nix::Result<()> {
    let bits = nodes.len() * libc::c_ulong::BITS as usize;
    // The kernel reads maxnode - 1 bits.
    let (ptr, maxnode) = if nodes.is_empty() {
        (std::ptr::null(), 0)
    } else {
        (nodes.as_ptr(), bits + 1)
    };
    // SAFETY: the kernel reads at most maxnode - 1 bits from `nodes`, which
    // holds exactly that many and outlives the call.
    check(unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) }).map(drop)
}

/// The kernel's `struct sched_attr` (sched_setattr(2)).
#[repr(C)]
#[derive(Debug, Default)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

/// sched_setattr(2) of this thread (pid 0).
pub fn sched_setattr_self(attr: &SchedAttr) -> nix::Result<()> {
    // SAFETY: the kernel reads `attr` (its size in attr.size), which outlives the call.
    check(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) })
        .map(drop)
}

/// The three capability sets of a thread, 64 bits each, as capget(2) and
/// capset(2) (version 3) carry them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: CapHeader = CapHeader {
    version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
    pid: 0,
};

/// capget(2) of this thread.
pub fn capget_self() -> nix::Result<CapSets> {
    let mut d = [CapData::default(); 2];
    // SAFETY: capget reads the v3 header and writes two data structs into
    // the array, both of which outlive the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_capget,
            &CAP_V3 as *const CapHeader,
            d.as_mut_ptr(),
        )
    })?;
    let join = |lo: u32, hi: u32| lo as u64 | (hi as u64) << 32;
    Ok(CapSets {
        effective: join(d[0].effective, d[1].effective),
        permitted: join(d[0].permitted, d[1].permitted),
        inheritable: join(d[0].inheritable, d[1].inheritable),
    })
}

/// capset(2) of this thread: the three sets at once.
pub fn capset_self(c: &CapSets) -> nix::Result<()> {
    let half = |v: u64, hi: bool| if hi { (v >> 32) as u32 } else { v as u32 };
    let d = [false, true].map(|hi| CapData {
        effective: half(c.effective, hi),
        permitted: half(c.permitted, hi),
        inheritable: half(c.inheritable, hi),
    });
    // SAFETY: capset reads the v3 header and two data structs that outlive the call.
    check(unsafe { libc::syscall(libc::SYS_capset, &CAP_V3 as *const CapHeader, d.as_ptr()) })
        .map(drop)
}

/// seccomp(2) SECCOMP_SET_MODE_FILTER of the BPF program `bpf` (an array
/// of struct sock_filter, as bytes) with `flags`; with
/// SECCOMP_FILTER_FLAG_NEW_LISTENER the result is the listener descriptor.
pub fn seccomp_set_mode_filter(flags: libc::c_ulong, bpf: &[u8]) -> nix::Result<i64> {
    let prog = libc::sock_fprog {
        len: (bpf.len() / std::mem::size_of::<libc::sock_filter>()) as u16,
        filter: bpf.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the kernel copies `len` instructions from the program, which
    // outlives the call, and does not write through the pointer.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    })
}

/// A `#[repr(C)]` prefix of the kernel's `union bpf_attr` for one bpf(2)
/// command, with no padding the kernel would read as set (its unused bytes
/// zero).
///
/// # Safety
/// Implement only for such structs: [`bpf`] hands the kernel a pointer to
/// the value and its size.
pub unsafe trait BpfAttr {}

/// bpf(2) `cmd` with its attribute struct; the kernel may write results
/// into it (a queried id list, a new descriptor's number).
pub fn bpf<T: BpfAttr>(cmd: libc::c_long, attr: &mut T) -> nix::Result<libc::c_long> {
    // SAFETY: T is a bpf_attr prefix (the BpfAttr contract) that lives for
    // the call; the size passed is its size.
    check(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    })
}

/// Does pidfd_open(2) work here (on this process)?
pub fn probe_pidfd() -> nix::Result<()> {
    pidfd_open(std::process::id() as i32).map(drop)
}

/// Does clone3(2) exist (not ENOSYS, nor blocked by a seccomp profile)?
/// Asked with a size below the first version, which fails with EINVAL before
/// anything is created when the call exists.
pub fn probe_clone3() -> nix::Result<()> {
    // SAFETY: a null argument with size 0 is refused before any memory is
    // read and before any process is created.
    match check(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) }) {
        Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Err(Errno::EINVAL),
    }
}

/// Does openat2(2) with RESOLVE_IN_ROOT work here (nix wraps the call)?
pub fn probe_openat2() -> nix::Result<()> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT);
    nix::fcntl::openat2(nix::fcntl::AT_FDCWD, "/", how).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn pidfd_signals_exactly_its_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        pidfd_send_signal(fd.as_fd(), libc::SIGKILL).unwrap();
        let st = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        assert_eq!(pidfd_open(-1).unwrap_err(), Errno::EINVAL);
    }

    #[test]
    fn probes_answer_on_this_kernel() {
        // The runtime needs all three; a kernel that lacks one fails here as
        // it would fail `nk-runtime check`.
        probe_pidfd().unwrap();
        probe_clone3().unwrap();
        probe_openat2().unwrap();
    }
}
