//! Creating a process in new namespaces with clone3, and running it as
//! `nk-runtime init` from a sealed in-memory copy of the runtime.
//!
//! Why a copy: inside the container, /proc/<pid>/exe of a process that runs
//! runtime code points at its executable. If that were the binary on the
//! host, a hostile container could reopen it for writing and replace the
//! runtime for everyone (CVE-2019-5736). A sealed memfd cannot be written.

use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use nix::sched::CloneFlags;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// The descriptor number the child's channel is moved to before exec.
pub const INIT_FD_ENV: &str = "_NK_INIT_FD";

/// The namespaces (CLONE_NEW* bits, in decimal) the init unshares itself at
/// its start, left out of the clone3 (see [`PreExec::late_unshare`]).
pub const INIT_UNSHARE_ENV: &str = "_NK_INIT_UNSHARE";

/// A descriptor of the running binary that cannot be written through: a
/// detached, read-only bind mount of it (open_tree + mount_setattr). This
/// costs two system calls, where a memfd copy costs a copy of the binary.
/// Falls back to the sealed memfd where the kernel or privileges refuse.
pub fn protected_exe() -> Result<OwnedFd> {
    match readonly_bind_of_self() {
        Ok(fd) => {
            explain::step(&catalog::EXE_PROTECT, || {
                "open_tree(/proc/self/exe, OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_RDONLY): the child execs a read-only, detached mount of the runtime".into()
            });
            Ok(fd)
        }
        Err(_) => sealed_self(),
    }
}

fn readonly_bind_of_self() -> Result<OwnedFd> {
    use crate::linux::syscall::{self, MountAttr, OPEN_TREE_CLONE};
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    let fd = syscall::open_tree(
        None,
        c"/proc/self/exe",
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
    )
    .map_err(|e| Error::sys("open_tree(/proc/self/exe)", e))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        ..Default::default()
    };
    syscall::mount_setattr(Some(fd.as_fd()), c"", 0, &attr)
        .map_err(|e| Error::sys("mount_setattr(MOUNT_ATTR_RDONLY)", e))?;
    Ok(fd)
}

/// A sealed, executable in-memory copy of the running binary.
pub fn sealed_self() -> Result<OwnedFd> {
    explain::step(&catalog::EXE_PROTECT, || {
        "memfd_create(\"nk-runtime\", MFD_ALLOW_SEALING) + copy /proc/self/exe + F_SEAL_WRITE|F_SEAL_GROW|F_SEAL_SHRINK|F_SEAL_SEAL".into()
    });
    let name = c"nk-runtime";
    const MFD_EXEC: libc::c_uint = 0x10;
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create with a static name; the descriptor is owned below.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), base | MFD_EXEC) };
    if fd < 0 {
        // Kernels before 6.3 do not know MFD_EXEC; memfds are executable there.
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), base) };
    }
    if fd < 0 {
        return Err(Error::sys(
            "memfd_create for the runtime copy",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: fd is a new descriptor we own.
    let mem = unsafe { OwnedFd::from_raw_fd(fd) };
    let exe = std::fs::File::open("/proc/self/exe").map_err(|e| {
        let path = std::fs::read_link("/proc/self/exe")
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "/proc/self/exe".into());
        Error::msg(format!(
            "cannot read the runtime's own executable {path} (through /proc/self/exe) to give the container a sealed copy of it: {e}; without privilege for a read-only bind mount of it, the copy is the only protection against CVE-2019-5736: make the file readable (chmod a+r)"
        ))
    })?;
    let size = exe.metadata().map(|m| m.len()).unwrap_or(0);
    let mut done = 0u64;
    while done < size {
        // SAFETY: sendfile between two descriptors we own, with no offset pointer.
        let n = unsafe {
            libc::sendfile(
                mem.as_raw_fd(),
                exe.as_raw_fd(),
                std::ptr::null_mut(),
                (size - done) as usize,
            )
        };
        if n < 0 {
            let e = nix::errno::Errno::last();
            if e == nix::errno::Errno::EINTR {
                continue;
            }
            return Err(Error::sys("copy the runtime into its memfd", e));
        }
        if n == 0 {
            break;
        }
        done += n as u64;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // F_SEAL_WRITE fails with EBUSY while the kernel still holds transient
    // references to the freshly written pages (observed under load): retry.
    let mut tries = 0;
    // SAFETY: fcntl(F_ADD_SEALS) on our memfd.
    while unsafe { libc::fcntl(mem.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        let e = nix::errno::Errno::last();
        tries += 1;
        if e != nix::errno::Errno::EBUSY || tries >= 50 {
            return Err(Error::sys("seal the runtime memfd", e));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Ok(mem)
}

pub(crate) use crate::linux::syscall::{clone3, CloneArgs};

/// What the child does between clone and exec.
pub struct PreExec<'a> {
    /// The child's end of the channel (moved to a fixed number for exec).
    pub channel: RawFd,
    /// The sealed runtime copy to exec.
    pub exe: &'a OwnedFd,
    /// A new user namespace was created: wait for the parent to write the
    /// id maps, then become root in it, before exec (exec would drop caps).
    pub wait_for_maps: bool,
    /// Lowest descriptor number the channel may take (above --preserve-fds).
    pub min_fd: RawFd,
    /// Extra descriptors to keep across exec (console socket ...): (fd, min).
    pub keep: &'a [RawFd],
    /// argv[1] for the init ("init").
    pub mode: &'a str,
    /// v1 `tasks` files the child writes "0" into to join its cgroup
    /// itself (see CgroupManager::self_join_files).
    pub cgroup_tasks: &'a [PathBuf],
    /// New namespaces the child makes itself, with unshare(2) right after
    /// its exec, rather than clone3 in the parent. A new network namespace
    /// is the slowest to make (about 0.6 ms here, more than every other
    /// kind together); made by the child, it no longer holds up the parent,
    /// which makes the cgroup meanwhile. Only for kinds that need nothing
    /// from the parent first, and never the pid namespace (unshare would
    /// move only the child's children).
    pub late_unshare: CloneFlags,
}

/// Existing namespaces a child is born in (see [`spawn_joined`]).
pub struct Join<'a> {
    /// Open nsfs descriptors with the CLONE_NEW* flag of each, user among
    /// them if the container has one; mount last.
    pub namespaces: &'a [(RawFd, CloneFlags)],
    /// A container without a mount namespace: chroot here, then chdir("/").
    pub chroot: Option<&'a std::ffi::CStr>,
}

/// A started child.
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// The descriptor numbers the kept fds have in the child.
    pub kept: Vec<RawFd>,
}

/// clone3 the child with `flags` (plus CLONE_PIDFD), optionally straight into
/// a cgroup v2 directory; the child runs `pre` and execs the runtime copy.
pub fn spawn(flags: CloneFlags, cgroup_fd: Option<RawFd>, pre: &PreExec<'_>) -> Result<Child> {
    spawn_inner(flags, cgroup_fd, None, pre)
}

/// Like [`spawn`], for a child that must be born inside existing namespaces:
/// an intermediate process enters the cgroup (`pre.cgroup_tasks`, or
/// `cgroup_fd` for its own clone3), then joins every namespace of `join`
/// (and its root), and only then clones the child with CLONE_PARENT (the
/// child is still ours to wait for), then exits. Its work is runc's nsexec
/// stage 1, in the same order.
///
/// Why not the child itself: setns(CLONE_NEWPID) only moves the caller's
/// future children, so a child that joins its namespaces by itself was
/// already in the pid namespace, with the host's root and the caller's cwd,
/// until it joined the mount namespace. A container process holding
/// CAP_SYS_PTRACE could reach the host through /proc/PID/root in that window
/// (issue 11). The intermediate is never in the container's pid namespace,
/// and the child is born there with its root and cwd already inside, no
/// descriptor of the runtime's but the ones it needs, and not dumpable.
///
/// The joins are those of runc: every namespace the runtime's own privileges
/// allow first, then the user namespace (becoming root in it), then the rest
/// (what only root in that user namespace may join: rootless exec).
pub fn spawn_joined(
    join: &Join<'_>,
    flags: CloneFlags,
    cgroup_fd: Option<RawFd>,
    pre: &PreExec<'_>,
) -> Result<Child> {
    spawn_inner(flags, cgroup_fd, Some(join), pre)
}

fn clone_error(flags: CloneFlags, e: nix::errno::Errno) -> Error {
    let hint = match e {
        nix::errno::Errno::EPERM => {
            " (creating these namespaces needs privileges; run as root or add a user namespace)"
        }
        nix::errno::Errno::EINVAL => " (an unsupported namespace flag combination)",
        nix::errno::Errno::ENOSPC | nix::errno::Errno::EUSERS => {
            " (a namespace count limit in /proc/sys/user was reached)"
        }
        _ => "",
    };
    Error::msg(format!(
        "clone3({}): {e}{hint}",
        crate::linux::namespaces::flag_names(flags)
    ))
}

/// What the child execs with: argv, envp and the descriptor layout, all
/// prepared before clone (after it, only async-signal-safe work happens).
struct ExecPlan<'a> {
    pre: &'a PreExec<'a>,
    /// The number the channel takes in the child.
    chan_no: RawFd,
    argv: [*const libc::c_char; 3],
    /// Null-terminated; points into `env`.
    envp: Vec<*const libc::c_char>,
    tasks: Vec<CString>,
}

fn spawn_inner(
    flags: CloneFlags,
    cgroup_fd: Option<RawFd>,
    join: Option<&Join<'_>>,
    pre: &PreExec<'_>,
) -> Result<Child> {
    let argv0 = c"nk-runtime";
    let argv1 = CString::new(pre.mode).unwrap_or_else(|_| c"init".into());
    let chan_no = pre.min_fd.max(3) + pre.keep.len() as i32;
    let env_s = CString::new(format!("{INIT_FD_ENV}={chan_no}")).unwrap_or_default();
    let keep_env = CString::new(format!(
        "_NK_KEEP_FDS={}",
        (0..pre.keep.len())
            .map(|i| (pre.min_fd.max(3) + i as i32).to_string())
            .collect::<Vec<_>>()
            .join(",")
    ))
    .unwrap_or_default();
    let mut env = vec![env_s, keep_env];
    if !pre.late_unshare.is_empty() {
        env.push(
            CString::new(format!("{INIT_UNSHARE_ENV}={}", pre.late_unshare.bits()))
                .unwrap_or_default(),
        );
    }
    // The test build passes NK_FAULT on, so the child side can crash too.
    #[cfg(feature = "fault-injection")]
    env.extend(
        explain::fault::env_entries()
            .into_iter()
            .filter_map(|e| CString::new(e).ok()),
    );
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let plan = ExecPlan {
        pre,
        chan_no,
        argv: [argv0.as_ptr(), argv1.as_ptr(), std::ptr::null()],
        envp,
        tasks: pre
            .cgroup_tasks
            .iter()
            .map(|p| crate::linux::fs::cstr(p.as_os_str()))
            .collect::<Result<_>>()?,
    };
    let kept: Vec<RawFd> = (0..pre.keep.len())
        .map(|i| pre.min_fd.max(3) + i as i32)
        .collect();

    if let Some(join) = join {
        crate::logging::set_role(crate::logging::Role::Parent); // from here on we have a child
        return spawn_via_intermediate(flags, cgroup_fd, join, &plan, kept);
    }

    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags.bits() as u64 | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(cg) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cg as u64;
    }
    crate::logging::set_role(crate::logging::Role::Parent); // from here on we have a child
    let def = if flags.is_empty() {
        &catalog::CLONE_JOIN
    } else {
        &catalog::CLONE
    };
    explain::step(def, || {
        format!(
            "clone3(flags={}{}){}",
            crate::linux::namespaces::flag_names(flags),
            if cgroup_fd.is_some() {
                ", CLONE_INTO_CGROUP"
            } else {
                ""
            },
            if pre.late_unshare.is_empty() {
                String::new()
            } else {
                format!(
                    "; the child makes {} itself (unshare, after its exec) while this process goes on",
                    crate::linux::namespaces::flag_names(pre.late_unshare)
                )
            }
        )
    });
    let r = match spawn_vfork(&mut args, &plan) {
        Some(r) => r,
        None => {
            // SAFETY: clone3 with a fully initialised clone_args of the right
            // size. In the child (return 0) we only call async-signal-safe
            // functions and exec.
            let r = unsafe { clone3(&mut args) };
            if r < 0 {
                return Err(clone_error(flags, nix::errno::Errno::last()));
            }
            if r == 0 {
                // SAFETY: the fresh, single-threaded child.
                unsafe { child_pre_exec(&plan) };
            }
            r
        }
    };
    if r < 0 {
        return Err(clone_error(flags, nix::errno::Errno::from_raw(-r as i32)));
    }
    // SAFETY: the kernel stored a new pidfd for the child; we own it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Child {
        pid: r as i32,
        pidfd,
        kept,
    })
}

/// The stack of a [`spawn_vfork`] child: it only arranges descriptors
/// with raw system calls and execs, in a few small frames.
const VFORK_STACK: usize = 32 * 1024;

/// clone3 of `args` with CLONE_VM|CLONE_VFORK added, the child starting at
/// `entry(arg)` on `stack`: the one way [`spawn_vfork`] and the
/// intermediate lend our memory to a child. None when the kernel refuses
/// the flags (EINVAL), for the caller to clone plainly; otherwise the
/// child's pid or a negative errno, once the child has exec'd or exited.
///
/// # Safety
/// `stack` (pointer, size) is writable memory that, like whatever `arg`
/// points to, outlives the child's use of it: CLONE_VFORK suspends the
/// caller until the child execs or exits. `entry` may make only raw,
/// async-signal-safe system calls: it runs in the caller's memory.
#[cfg(target_arch = "x86_64")]
unsafe fn clone_vfork(
    args: &CloneArgs,
    stack: (*mut u8, usize),
    entry: unsafe extern "C" fn(*mut libc::c_void) -> !,
    arg: *mut libc::c_void,
) -> Option<libc::c_long> {
    let mut a = CloneArgs {
        flags: args.flags | libc::CLONE_VM as u64 | libc::CLONE_VFORK as u64,
        stack: stack.0 as u64,
        stack_size: (stack.1 & !15) as u64,
        ..*args
    };
    // SAFETY: a fully initialised clone_args on a stack the caller vouches
    // for (see the contract above).
    let r = unsafe { crate::linux::syscall::clone3_on_stack(&mut a, entry, arg) };
    (r != -(libc::EINVAL as libc::c_long)).then_some(r)
}

/// clone3 with CLONE_VM|CLONE_VFORK, as posix_spawn does: the child borrows
/// our memory until it execs the runtime copy, and we wait until then.
///
/// Why: a plain clone copies our page tables and write-protects every page
/// we had written, so each page we write afterwards (heap, stack) takes a
/// copy-on-write fault; on this kind of host (shadow paging) those cost
/// several microseconds each, about 45 per `run`. The wait is short: the
/// child's few descriptor calls and the start of its exec.
///
/// Returns None where this cannot be used: a child that must wait for its id
/// maps before exec (we would be suspended, unable to write them), other
/// architectures, or a kernel refusing the flags (EINVAL); the caller then
/// clones plainly. Some(result) otherwise: the pid, or a negative errno.
fn spawn_vfork(args: &mut CloneArgs, plan: &ExecPlan<'_>) -> Option<libc::c_long> {
    #[cfg(target_arch = "x86_64")]
    {
        if plan.pre.wait_for_maps {
            return None;
        }
        /// The child's entry, on its own stack.
        ///
        /// # Safety
        /// `arg` is the `ExecPlan` of the suspended parent.
        unsafe extern "C" fn child(arg: *mut libc::c_void) -> ! {
            // SAFETY: the parent passed its plan, which stays valid while it
            // is suspended (CLONE_VFORK); we are the fresh child.
            unsafe { child_pre_exec(&*(arg as *const ExecPlan<'_>)) }
        }
        // Uninitialised: the child touches only the pages it uses.
        let mut stack: Vec<u8> = Vec::with_capacity(VFORK_STACK);
        // SAFETY: the stack is ours and lives until the child has exec'd or
        // exited (CLONE_VFORK suspends us until then); the child runs only
        // child_pre_exec's raw calls on the plan, which outlives it too.
        let r = unsafe {
            clone_vfork(
                args,
                (stack.as_mut_ptr(), VFORK_STACK),
                child,
                plan as *const ExecPlan<'_> as *mut libc::c_void,
            )
        };
        drop(stack);
        r
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (args, plan);
        None
    }
}

/// clone3's CLONE_INTO_CGROUP (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What the intermediate reports on its pipe: three numbers, the child's pid
/// (and two zeros), or a failed step (negative), the errno and an index.
const STEP_SETNS: i32 = -1;
const STEP_SETUID: i32 = -2;
const STEP_CLONE: i32 = -3;
const STEP_CGROUP: i32 = -4;
const STEP_CHROOT: i32 = -5;
const STEP_FDS: i32 = -6;

fn spawn_via_intermediate(
    flags: CloneFlags,
    cgroup_fd: Option<RawFd>,
    join: &Join<'_>,
    plan: &ExecPlan<'_>,
    kept: Vec<RawFd>,
) -> Result<Child> {
    if join.namespaces.len() > 16 {
        return Err(Error::msg("more than 16 namespaces to join"));
    }
    let def = if flags.is_empty() {
        &catalog::CLONE_JOIN
    } else {
        &catalog::USERNS_JOIN
    };
    explain::step(def, || {
        format!(
            "clone3({}) an intermediate; it joins {} namespace(s){}, then clone3(CLONE_PARENT|{})",
            if cgroup_fd.is_some() {
                "CLONE_INTO_CGROUP"
            } else {
                ""
            },
            join.namespaces.len(),
            if join.chroot.is_some() {
                " and chroots"
            } else {
                ""
            },
            crate::linux::namespaces::flag_names(flags)
        )
    });
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe for the intermediate process", e))?;
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(cg) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cg as u64;
    }
    let r = match intermediate_vfork(&mut args, flags, join, plan, wr.as_raw_fd()) {
        Some(r) => r,
        None => {
            // SAFETY: clone3 as in spawn; the intermediate only makes raw
            // system calls on values prepared before the clone, then _exit()s.
            let r = unsafe { clone3(&mut args) };
            if r < 0 {
                return Err(clone_error(CloneFlags::empty(), nix::errno::Errno::last()));
            }
            if r == 0 {
                // SAFETY: the fresh, single-threaded intermediate.
                unsafe { intermediate(flags, join, plan, wr.as_raw_fd(), None) };
            }
            r
        }
    };
    if r < 0 {
        return Err(clone_error(
            CloneFlags::empty(),
            nix::errno::Errno::from_raw(-r as i32),
        ));
    }
    // SAFETY: the kernel stored a pidfd for the intermediate; we own it.
    let mid = unsafe { OwnedFd::from_raw_fd(pidfd) };
    drop(wr);
    let mut buf = [0u8; 12];
    let n = loop {
        match nix::unistd::read(&rd, &mut buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.unwrap_or(0),
        }
    };
    let status = wait_pidfd(&mid)?;
    let word = |i: usize| i32::from_ne_bytes(buf[i * 4..i * 4 + 4].try_into().unwrap_or_default());
    let (a, b, c) = (word(0), word(1), word(2));
    if n != 12 {
        return Err(Error::msg(format!(
            "the intermediate process that joins the container's namespaces died (status {status})"
        )));
    }
    let e = nix::errno::Errno::from_raw(b);
    match a {
        STEP_SETNS => {
            let flag = join.namespaces.get(c as usize).map(|(_, f)| *f);
            let name = crate::linux::namespaces::JOIN_ORDER
                .iter()
                .find(|t| Some(crate::linux::namespaces::clone_flag(**t)) == flag)
                .map(|t| crate::linux::namespaces::proc_name(*t))
                .unwrap_or("?");
            let hint = if flag == Some(CloneFlags::CLONE_NEWUSER) {
                " (the runtime needs CAP_SYS_ADMIN in it)"
            } else {
                ""
            };
            return Err(Error::sys(
                format!("setns into the {name} namespace to join{hint}"),
                e,
            ));
        }
        STEP_SETUID => {
            return Err(Error::sys(
                "become root in the joined user namespace (is uid 0 and gid 0 mapped in it?)",
                e,
            ))
        }
        STEP_CLONE => return Err(clone_error(flags, e)),
        STEP_CGROUP => {
            return Err(Error::sys(
                format!(
                    "join the container's cgroup: write 0 to {}",
                    plan.pre
                        .cgroup_tasks
                        .get(c as usize)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ),
                e,
            ))
        }
        STEP_CHROOT => {
            return Err(Error::sys(
                format!(
                    "chroot into the container's root {}",
                    join.chroot.map(|c| c.to_string_lossy()).unwrap_or_default()
                ),
                e,
            ))
        }
        STEP_FDS => return Err(Error::sys("arrange the child's descriptors", e)),
        _ => {}
    }
    let pid = a;
    let pidfd = pidfd_of_child(pid, r as i32, "the intermediate process")?;
    Ok(Child { pid, pidfd, kept })
}

/// A pidfd of `pid`, which `who` reported as a process it cloned with
/// CLONE_PARENT: ours, unreaped (so its pid is not reused), and not `who`
/// itself. Checked, so a report that did not come from `who` is refused.
pub(crate) fn pidfd_of_child(pid: i32, who_pid: i32, who: &str) -> Result<OwnedFd> {
    let refuse = || {
        Error::msg(format!(
            "{who} reported pid {pid}, which is not a new child of the runtime"
        ))
    };
    if pid <= 0 || pid == who_pid {
        return Err(refuse());
    }
    let pidfd = crate::linux::syscall::pidfd_open(pid)
        .map_err(|e| Error::sys(format!("pidfd_open of the new process {pid}"), e))?;
    let ours = crate::state::proc_stat(pid).is_some_and(|s| s.ppid == std::process::id() as i32);
    if !ours {
        return Err(refuse());
    }
    Ok(pidfd)
}

/// What an intermediate cloned by [`intermediate_vfork`] is given.
struct MidArgs<'a> {
    flags: CloneFlags,
    join: &'a Join<'a>,
    plan: &'a ExecPlan<'a>,
    wr: RawFd,
    /// The stack its own child borrows our memory on.
    child_stack: (*mut u8, usize),
}

/// What the intermediate's own CLONE_VM child is given.
struct FinalArgs<'a> {
    plan: &'a ExecPlan<'a>,
    exe: RawFd,
    wr: RawFd,
}

/// The intermediate of [`spawn_joined`] with CLONE_VM|CLONE_VFORK, and its
/// child the same way: as [`spawn_vfork`], neither copies our page tables,
/// so we take no copy-on-write faults afterwards. We are suspended until
/// the intermediate exits, it until its child execs.
///
/// None where this cannot be used: a joined user or time namespace (the
/// kernel lets only a process that shares its memory with no other enter
/// one), a child that waits for its id maps, other architectures, or an
/// EINVAL from the kernel; the caller then clones plainly.
fn intermediate_vfork(
    args: &mut CloneArgs,
    flags: CloneFlags,
    join: &Join<'_>,
    plan: &ExecPlan<'_>,
    wr: RawFd,
) -> Option<libc::c_long> {
    #[cfg(target_arch = "x86_64")]
    {
        const CLONE_NEWTIME: libc::c_int = 0x80;
        let alone_only = join
            .namespaces
            .iter()
            .any(|(_, f)| f.contains(CloneFlags::CLONE_NEWUSER) || f.bits() & CLONE_NEWTIME != 0);
        if alone_only || plan.pre.wait_for_maps {
            return None;
        }
        /// The intermediate's entry, on its own stack.
        ///
        /// # Safety
        /// `arg` is the `MidArgs` of the suspended parent.
        unsafe extern "C" fn mid(arg: *mut libc::c_void) -> ! {
            // SAFETY: the parent's arguments stay valid while it is
            // suspended (CLONE_VFORK); we are the fresh intermediate.
            unsafe {
                let m = &*(arg as *const MidArgs<'_>);
                intermediate(m.flags, m.join, m.plan, m.wr, Some(m.child_stack))
            }
        }
        // Uninitialised: each child touches only the pages it uses.
        let mut own: Vec<u8> = Vec::with_capacity(VFORK_STACK);
        let mut childs: Vec<u8> = Vec::with_capacity(VFORK_STACK);
        let m = MidArgs {
            flags,
            join,
            plan,
            wr,
            child_stack: (childs.as_mut_ptr(), VFORK_STACK),
        };
        // SAFETY: both stacks and `m` live until the intermediate has
        // exited (CLONE_VFORK suspends us until then); it runs only raw
        // system calls.
        let r = unsafe {
            clone_vfork(
                args,
                (own.as_mut_ptr(), VFORK_STACK),
                mid,
                &m as *const MidArgs<'_> as *mut libc::c_void,
            )
        };
        drop((own, childs));
        r
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (args, flags, join, plan, wr);
        None
    }
}

/// Report on the intermediate's pipe and exit.
///
/// # Safety
/// Only in the intermediate process.
unsafe fn report(wr: RawFd, a: i32, b: i32, c: i32) -> ! {
    let v = [a, b, c];
    // SAFETY: a write of our own buffer, then _exit.
    unsafe {
        libc::write(wr, v.as_ptr().cast(), 12);
        libc::_exit(if a < 0 { 1 } else { 0 })
    }
}

/// The intermediate of [`spawn_joined`].
///
/// # Safety
/// Only in the fresh, single-threaded child of clone3: raw async-signal-safe
/// system calls on values prepared before the clone.
unsafe fn intermediate(
    flags: CloneFlags,
    join: &Join<'_>,
    plan: &ExecPlan<'_>,
    wr: RawFd,
    child_stack: Option<(*mut u8, usize)>,
) -> ! {
    // SAFETY: (whole block) see the function's contract.
    unsafe {
        let errno = || *libc::__errno_location();
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        // The cgroup first, while the host's files are still ours to write.
        for (i, t) in plan.tasks.iter().enumerate() {
            let fd = libc::open(t.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                report(wr, STEP_CGROUP, errno(), i as i32);
            }
            libc::close(fd);
        }
        let user = CloneFlags::CLONE_NEWUSER;
        let mut joined: u32 = 0;
        for (i, (fd, f)) in join.namespaces.iter().enumerate() {
            if *f == user {
                continue;
            }
            if libc::setns(*fd, f.bits()) == 0 {
                joined |= 1 << i;
            } else if errno() != libc::EPERM {
                report(wr, STEP_SETNS, errno(), i as i32);
            }
        }
        for (i, (fd, f)) in join.namespaces.iter().enumerate() {
            if *f != user {
                continue;
            }
            if libc::setns(*fd, f.bits()) != 0 {
                report(wr, STEP_SETNS, errno(), i as i32);
            }
            joined |= 1 << i;
            if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
                report(wr, STEP_SETUID, errno(), i as i32);
            }
        }
        for (i, (fd, f)) in join.namespaces.iter().enumerate() {
            if joined & (1 << i) == 0 && libc::setns(*fd, f.bits()) != 0 {
                report(wr, STEP_SETNS, errno(), i as i32);
            }
        }
        if let Some(root) = join.chroot {
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                report(wr, STEP_CHROOT, errno(), 0);
            }
        }
        // The child inherits our descriptor table: leave in it only what it
        // needs (stdio, --preserve-fds, the kept ones, the channel, the
        // runtime copy) and the pipe back to the runtime.
        let Some((exe, wr)) = arrange_fds(plan, wr, true) else {
            report(wr, STEP_FDS, errno(), 0);
        };
        // CLONE_PARENT: the runtime, not us, is the child's parent (and
        // gets its exit); clone3 wants exit_signal 0 with it.
        let mut cargs = CloneArgs {
            flags: flags.bits() as u64 | libc::CLONE_PARENT as u64,
            ..Default::default()
        };
        // We borrow the runtime's memory (intermediate_vfork): so does our
        // child, on its own stack, until it execs. A kernel refusing that
        // (EINVAL) gets the plain clone.
        #[cfg(target_arch = "x86_64")]
        if let Some((stack, size)) = child_stack {
            /// The child's entry, on its own stack.
            ///
            /// # Safety
            /// `arg` is the `FinalArgs` of the suspended intermediate.
            unsafe extern "C" fn fin(arg: *mut libc::c_void) -> ! {
                // SAFETY: valid while the intermediate is suspended; we are
                // its fresh child.
                unsafe {
                    let f = &*(arg as *const FinalArgs<'_>);
                    libc::close(f.wr);
                    exec_runtime(f.plan, f.exe)
                }
            }
            let f = FinalArgs { plan, exe, wr };
            match clone_vfork(
                &cargs,
                (stack, size),
                fin,
                &f as *const FinalArgs<'_> as *mut libc::c_void,
            ) {
                Some(c) if c >= 0 => report(wr, c as i32, 0, 0),
                Some(c) => report(wr, STEP_CLONE, -c as i32, 0),
                None => {}
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = child_stack;
        let c = clone3(&mut cargs);
        if c < 0 {
            report(wr, STEP_CLONE, errno(), 0);
        }
        if c == 0 {
            libc::close(wr);
            exec_runtime(plan, exe);
        }
        report(wr, c as i32, 0, 0);
    }
}

/// Move the kept descriptors and the channel to their fixed numbers (without
/// CLOEXEC), the runtime copy (and `extra`, if any) right above the channel
/// (with CLOEXEC), and close everything above those (`close`), or mark it
/// close-on-exec. Returns the new numbers of the runtime copy and `extra`.
///
/// # Safety
/// Only in a fresh child of clone3 (raw async-signal-safe calls).
unsafe fn arrange_fds(plan: &ExecPlan<'_>, extra: RawFd, close: bool) -> Option<(RawFd, RawFd)> {
    let pre = plan.pre;
    let base = pre.min_fd.max(3);
    // Copies go above every target, so no move clobbers a source.
    let high = plan.chan_no + 8;
    // SAFETY: (whole block) raw descriptor calls on our own table.
    unsafe {
        let mut src: [RawFd; 8] = [-1; 8];
        let mut n = 0;
        for fd in pre.keep.iter().chain(std::iter::once(&pre.channel)) {
            if n == src.len() {
                return None;
            }
            src[n] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, high);
            if src[n] < 0 {
                return None;
            }
            n += 1;
        }
        let exe = libc::fcntl(pre.exe.as_fd().as_raw_fd(), libc::F_DUPFD_CLOEXEC, high);
        let ext = if extra >= 0 {
            libc::fcntl(extra, libc::F_DUPFD_CLOEXEC, high)
        } else {
            -1
        };
        if exe < 0 || (extra >= 0 && ext < 0) {
            return None;
        }
        for (i, fd) in src.iter().take(n).enumerate() {
            let target = if i == n - 1 {
                plan.chan_no
            } else {
                base + i as i32
            };
            if libc::dup2(*fd, target) < 0 {
                return None;
            }
        }
        let exe_no = plan.chan_no + 1;
        let ext_no = if extra >= 0 { plan.chan_no + 2 } else { -1 };
        if libc::dup3(exe, exe_no, libc::O_CLOEXEC) < 0
            || (extra >= 0 && libc::dup3(ext, ext_no, libc::O_CLOEXEC) < 0)
        {
            return None;
        }
        let first = if extra >= 0 { ext_no + 1 } else { exe_no + 1 };
        let how = if close {
            0
        } else {
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint
        };
        if crate::linux::syscall::close_range(first as u32, u32::MAX, how).is_err() {
            return None;
        }
        Some((exe_no, ext_no))
    }
}

/// Send one of the child's fixed errors on the channel and exit.
///
/// # Safety
/// Only in a fresh child of clone3.
unsafe fn child_fail(channel: RawFd, code: u8) -> ! {
    let msg: &[u8] = match code {
        1 => b"{\"Error\":\"child: waiting for the id maps failed\"}",
        2 => b"{\"Error\":\"child: cannot become root in the new user namespace (is container uid 0 mapped?)\"}",
        3 => b"{\"Error\":\"child: dup of the channel failed\"}",
        5 => b"{\"Error\":\"child: joining the container's cgroup (writing 0 to a v1 tasks file) failed\"}",
        _ => b"{\"Error\":\"child: exec of the runtime copy failed\"}",
    };
    // SAFETY: a send of a static buffer, then _exit.
    unsafe {
        libc::send(channel, msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL);
        libc::_exit(1)
    }
}

/// The child of [`spawn`]: join the cgroup, arrange the descriptors, exec.
///
/// # Safety
/// Only in the fresh, single-threaded child of clone3.
unsafe fn child_pre_exec(plan: &ExecPlan<'_>) -> ! {
    // SAFETY: (whole block) raw async-signal-safe system calls on values
    // prepared before clone.
    unsafe {
        // Not dumpable: other processes cannot ptrace us or open /proc/<pid>/exe.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // Join the cgroup first, before running anything of our own.
        for t in &plan.tasks {
            let fd = libc::open(t.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                child_fail(plan.pre.channel, 5);
            }
            libc::close(fd);
        }
        // Nothing else crosses the exec: descriptors the runtime inherited
        // from its caller, or opened without CLOEXEC, would otherwise reach the
        // init (and, through it, the container) pointing at host files.
        // A child that blocks for its id maps closes them now: among them is
        // the parent's end of the channel, and while we held it a parent
        // that died before our PR_SET_PDEATHSIG (which then never fires)
        // left us waiting for ever, where the last end closing ends the wait.
        let Some((exe, _)) = arrange_fds(plan, -1, plan.pre.wait_for_maps) else {
            child_fail(plan.pre.channel, 3);
        };
        exec_runtime(plan, exe);
    }
}

/// The last steps of every child: not dumpable, die with the parent, wait
/// for the id maps if asked, and exec the runtime copy.
///
/// # Safety
/// Only in a fresh child of clone3, its descriptors arranged.
unsafe fn exec_runtime(plan: &ExecPlan<'_>, exe: RawFd) -> ! {
    let ch = plan.chan_no;
    // SAFETY: (whole block) raw async-signal-safe system calls.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // Die with the parent until the channel says otherwise.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if plan.pre.wait_for_maps {
            // The parent writes our uid_map/gid_map. Without root it may only
            // open them while we are dumpable (a non-dumpable task's /proc
            // files belong to root), so be dumpable just for that, as runc is,
            // and say so: writing before this point fails with EACCES.
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
            let ready = b"\"MapsReady\"";
            if libc::send(ch, ready.as_ptr().cast(), ready.len(), libc::MSG_NOSIGNAL) < 0 {
                child_fail(ch, 1);
            }
            let mut b = [0u8; 64];
            let n = libc::recv(ch, b.as_mut_ptr().cast(), b.len(), 0);
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            if n <= 0 {
                child_fail(ch, 1);
            }
            if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
                child_fail(ch, 2);
            }
        }
        // Reset the signal mask: the parent blocked signals to forward them.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        crate::linux::syscall::execveat_fd(exe, plan.argv.as_ptr(), plan.envp.as_ptr());
        child_fail(ch, 4);
    }
}

/// Wait for a child through its pidfd; returns the shell-style exit status
/// (code, or 128+signal).
pub fn wait_pidfd(pidfd: &OwnedFd) -> Result<i32> {
    loop {
        // SAFETY: a zeroed siginfo_t is valid; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid(P_PIDFD) on our pidfd writing into `info`.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        if r < 0 {
            let e = nix::errno::Errno::last();
            if e == nix::errno::Errno::EINTR {
                continue;
            }
            return Err(Error::sys("waitid(P_PIDFD)", e));
        }
        return Ok(status_of(&info));
    }
}

/// Exit status from a siginfo of waitid.
pub fn status_of(info: &libc::siginfo_t) -> i32 {
    // SAFETY: si_status is valid for SIGCHLD siginfo filled by waitid.
    let st = unsafe { info.si_status() };
    match info.si_code {
        libc::CLD_EXITED => st,
        libc::CLD_KILLED | libc::CLD_DUMPED => 128 + st,
        _ => st,
    }
}
