//! Every explanation text in one place. Code refers to steps by constant; the
//! renderer looks texts up by key, so a step narrated inside the container
//! (and sent to the parent as a key) prints the same words.
//!
//! Each step says what is done and why: what isolation it gives, and what
//! would go wrong without it. The concrete values (flags, paths, numbers) come
//! from the container's config at run time, as the step's detail.

/// The phases of a container's life, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading and validating config.json.
    Spec,
    /// Claiming, reading or removing the state directory.
    State,
    /// Creating the cgroup and writing limits.
    Cgroups,
    /// clone3 of the container's first process.
    Clone,
    /// Joining or creating namespaces, id maps, hostname.
    Namespaces,
    /// Building the root filesystem: mounts, devices, masked paths.
    Mounts,
    /// Switching the root with pivot_root.
    PivotRoot,
    /// Running OCI hooks.
    Hooks,
    /// User, groups, capabilities, rlimits, seccomp.
    Process,
    /// Waiting on, or opening, exec.fifo.
    ExecBarrier,
    /// execve of the container's program.
    Exec,
    /// Signals and waiting for exit.
    Signals,
    /// Tearing down.
    Delete,
}

impl Phase {
    /// The heading printed for this phase.
    pub fn title(self) -> &'static str {
        match self {
            Phase::Spec => "spec parsing",
            Phase::State => "state",
            Phase::Cgroups => "cgroup setup",
            Phase::Clone => "clone",
            Phase::Namespaces => "namespace setup",
            Phase::Mounts => "mounts",
            Phase::PivotRoot => "pivot_root",
            Phase::Hooks => "hooks",
            Phase::Process => "process attributes",
            Phase::ExecBarrier => "exec barrier",
            Phase::Exec => "exec",
            Phase::Signals => "signals and exit",
            Phase::Delete => "teardown",
        }
    }
}

/// One explainable step: stable key, phase, what happens and why.
#[derive(Debug)]
pub struct StepDef {
    pub key: &'static str,
    pub phase: Phase,
    pub what: &'static str,
    pub why: &'static str,
}

macro_rules! steps {
    ($($name:ident = $key:literal, $phase:ident, $what:literal, $why:literal;)*) => {
        $(
            #[doc = $what]
            pub static $name: StepDef = StepDef { key: $key, phase: Phase::$phase, what: $what, why: $why };
        )*
        /// Every step, for lookup by key and for the test that each is narrated.
        pub static ALL: &[&StepDef] = &[$(&$name),*];
    };
}

steps! {
    SPEC_LOAD = "spec.load", Spec,
        "Read config.json from the bundle and check every field.",
        "The bundle is the contract between the engine and the runtime. A bad field is refused here, before any process, mount or cgroup exists, so nothing is left half-made.";
    STATE_CLAIM = "state.claim", State,
        "Claim the container id by renaming a private directory into the state root.",
        "rename(2) with RENAME_NOREPLACE is atomic: of two creates of one id exactly one wins, and every later command (start, kill, delete) finds the container by this directory.";
    EXE_PROTECT = "exe.protect", Clone,
        "Copy the runtime into a sealed memfd; the container's first process runs from that copy.",
        "Inside the container, /proc/self/exe must not lead back to the runtime binary on the host: a hostile container could otherwise open and overwrite it (CVE-2019-5736).";
    CGROUP_CREATE = "cgroup.create", Cgroups,
        "Create the container's cgroup directories.",
        "Limits belong to a cgroup, not to a process. Making the cgroup first, and moving the child into it before it runs a single instruction of its own, means no moment runs unlimited.";
    CGROUP_WRITE = "cgroup.write", Cgroups,
        "Write a resource limit into the cgroup.",
        "The kernel enforces what is written in these files: a memory limit, a CPU quota, a maximum number of processes.";
    CGROUP_JOIN = "cgroup.join", Cgroups,
        "Move the process into the cgroup (write its pid to cgroup.procs).",
        "Membership is inherited by every child the process will ever fork, so the whole container is accounted and limited together.";
    CLONE = "clone", Clone,
        "clone3() the container's first process with new namespaces.",
        "Namespaces are created together with the process, so it never sees the host's pid table, mounts, network or hostname; with a new pid namespace it becomes pid 1.";
    USERNS_MAP = "userns.map", Namespaces,
        "Write the child's uid_map and gid_map.",
        "A new user namespace starts with no ids mapped; the parent writes the mapping from outside so root in the container is an unprivileged id on the host.";
    NS_JOIN = "ns.join", Namespaces,
        "setns() into an existing namespace named by path.",
        "Joining lets containers share one network or IPC namespace, as a Kubernetes pod does, instead of each getting its own.";
    NS_TIME = "ns.time", Namespaces,
        "unshare(CLONE_NEWTIME) and write the clock offsets.",
        "A time namespace shifts CLOCK_MONOTONIC and CLOCK_BOOTTIME for the container only, for example so a migrated container keeps counting from where it was.";
    HOSTNAME = "hostname", Namespaces,
        "sethostname() and setdomainname() inside the new UTS namespace.",
        "The name is private to the container's UTS namespace; without that namespace this call would rename the host.";
    MOUNT_PROPAGATION = "mount.propagation", Mounts,
        "Make the whole mount tree slave or private (rootfsPropagation).",
        "The new mount namespace starts as a copy of the host's. Cutting propagation stops the container's mounts from appearing on the host, and the host's from leaking in unless asked.";
    ROOTFS_BIND = "rootfs.bind", Mounts,
        "Bind-mount the rootfs onto itself.",
        "pivot_root needs the new root to be a mount point; a bind mount of the bundle's rootfs directory makes it one.";
    MOUNT = "mount", Mounts,
        "Mount an entry of config.json inside the rootfs.",
        "Each destination is resolved with openat2(RESOLVE_IN_ROOT), so a symlink planted in the image cannot send the mount onto the host (CVE-2021-30465).";
    DEVICES = "devices", Mounts,
        "Create the default device nodes and the linux.devices list in /dev.",
        "A fresh tmpfs /dev holds only what the container may use: null, zero, full, random, urandom, tty and those asked for. The host's disks are simply absent.";
    DEV_SYMLINKS = "devices.symlinks", Mounts,
        "Create /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr and /dev/ptmx symlinks.",
        "Programs expect these names; they point into /proc/self/fd and the container's own devpts.";
    CONSOLE = "console", Mounts,
        "Allocate a pseudo-terminal in the container's devpts and hand over its master.",
        "With process.terminal the program gets a real tty; the master end goes to the engine over --console-socket (SCM_RIGHTS), or to this runtime, which bridges it to your terminal.";
    PIVOT_ROOT = "pivot_root", PivotRoot,
        "pivot_root() into the rootfs and detach the old root.",
        "After this the host's filesystem is not reachable by path at all; unlike chroot, there is no old root left to climb back to.";
    NO_PIVOT = "no_pivot", PivotRoot,
        "Move the rootfs onto / with MS_MOVE and chroot() into it (--no-pivot).",
        "For a root on ramfs, where pivot_root is not allowed. It is weaker: the old root stays in the mount namespace.";
    MASKED_PATHS = "paths.masked", Mounts,
        "Hide maskedPaths: /dev/null over files, an empty read-only tmpfs over directories.",
        "Files such as /proc/kcore and /proc/keys reveal host memory or secrets; masking makes them read as empty.";
    READONLY_PATHS = "paths.readonly", Mounts,
        "Remount readonlyPaths read-only.",
        "/proc/sys and friends would let the container retune the host kernel; read-only keeps them visible but unchangeable.";
    ROOT_READONLY = "root.readonly", Mounts,
        "Remount the root read-only (root.readonly).",
        "The image cannot be changed from inside; writes go only to the mounts made writable on purpose.";
    SYSCTL = "sysctl", Namespaces,
        "Write linux.sysctl values under /proc/sys.",
        "Only namespaced sysctls (net.*, kernel.shm*, kernel.msg*, fs.mqueue.*) are per-container; the values change the container's namespaces, not the host.";
    HOOK = "hook", Hooks,
        "Run an OCI hook with the container state on stdin.",
        "Hooks let the engine plug in at fixed points: Docker's prestart hook sets up networking, for example. A failing prestart or createRuntime hook fails the create.";
    RLIMITS = "rlimits", Process,
        "setrlimit() the process.rlimits.",
        "Limits such as RLIMIT_NOFILE bound one process rather than the cgroup; they are inherited by everything it starts.";
    OOM_SCORE = "oom_score_adj", Process,
        "Write /proc/self/oom_score_adj.",
        "Tells the kernel's OOM killer how willing it should be to pick this container first.";
    KEYRING = "keyring", Process,
        "Join a new session keyring named after the container.",
        "Kernel keyrings are not namespaced: without its own session keyring the container would share the caller's keys (tokens, secrets). --no-new-keyring skips this.";
    PERSONALITY = "personality", Process,
        "personality() with linux.personality's execution domain.",
        "LINUX32 makes uname report a 32-bit machine, so 32-bit build tools inside behave as on a 32-bit host.";
    SCHEDULER = "scheduler", Process,
        "sched_setattr() with process.scheduler's policy, nice value and priority.",
        "The policy is inherited by everything the program starts: a batch or idle container yields the CPU to the host, a real-time one takes it first.";
    IOPRIO = "ioprio", Process,
        "ioprio_set() with process.ioPriority.",
        "The I/O scheduler serves the container's disk requests in this class (real-time, best-effort or idle).";
    CPU_AFFINITY = "cpu_affinity", Process,
        "sched_setaffinity() with execCPUAffinity.",
        "An exec process starts on the CPUs of the runtime that made it; initial places it before it joins the container's cgroup, final after.";
    LSM_LABEL = "lsm.label", Process,
        "Set the AppArmor profile or SELinux label for the next execve.",
        "A mandatory access control policy confines the program whatever its uid and capabilities; the label takes effect when the program is exec'd.";
    USERNS_JOIN = "userns.join", Clone,
        "Start an intermediate process that joins the user namespace, then clone the init from it.",
        "Namespaces belong to the user namespace of the process that creates them: cloned from inside the joined one, the container's new mount, pid and other namespaces are owned by it, so its root can manage them.";
    IDMAP_MOUNT = "mount.idmap", Mounts,
        "Clone the mount source with open_tree() and give it an id mapping with mount_setattr(MOUNT_ATTR_IDMAP).",
        "An idmapped mount shows files with their owners shifted, so a host directory owned by root appears owned by root inside a user namespace without chown'ing anything on disk.";
    USER = "user", Process,
        "setgroups(), setgid() and setuid() to the process.user ids; set the umask.",
        "The program runs with the ids the config asks for. Groups are set first, while the process may still change them.";
    CAPS = "capabilities", Process,
        "Set the five capability sets: drop from bounding, then set inheritable, permitted, effective and ambient.",
        "Root in a container keeps only the privileges it is given; dropping from the bounding set makes the loss permanent for every descendant.";
    NO_NEW_PRIVS = "no_new_privs", Process,
        "prctl(PR_SET_NO_NEW_PRIVS).",
        "After this no execve can gain privileges: setuid binaries and file capabilities stop working inside.";
    SECCOMP = "seccomp", Process,
        "Load the seccomp filter.",
        "A BPF program checks every system call against linux.seccomp; a denied call fails (for example with EPERM) or kills the process, whatever the capabilities.";
    CLOSE_FDS = "fds.close", Process,
        "Mark every descriptor above stdio (and --preserve-fds) close-on-exec.",
        "A descriptor of the runtime that survived into the container would be a door back to the host (CVE-2024-21626).";
    BARRIER_WAIT = "barrier.wait", ExecBarrier,
        "Wait on exec.fifo until `start`.",
        "create and start are two commands: the process is fully set up and parked here, so start only has to open the fifo and the program runs at once.";
    BARRIER_OPEN = "barrier.open", ExecBarrier,
        "Open and read exec.fifo, releasing the waiting init.",
        "The read completes only when the init has written to the fifo, so start knows the program is about to exec.";
    EXEC = "exec", Exec,
        "execve() the container's program.",
        "The runtime's code is replaced by the program; from here on the container is just a process tree in namespaces and a cgroup.";
    EXEC_JOIN = "exec.join", Namespaces,
        "setns() into each namespace of the running container, and join its cgroup.",
        "`exec` adds a process to an existing container: it must see the same pids, mounts, network and limits as the init.";
    WAIT = "wait", Signals,
        "Wait for the container's exit with a pidfd, forwarding signals to it.",
        "The pidfd is armed before the child can run, so even a program that exits at once is never missed, and Ctrl-C reaches the container rather than killing the runtime.";
    KILL = "kill", Signals,
        "Send a signal to the container's init (or, with --all, every process in its cgroup).",
        "pid 1 in a pid namespace ignores signals it has no handler for, except SIGKILL; stopping a container therefore often takes SIGTERM then SIGKILL.";
    DELETE_CGROUP = "delete.cgroup", Delete,
        "Kill leftover processes and remove the cgroup directories.",
        "A cgroup with members cannot be removed; an orphaned cgroup would keep its limits and counters forever.";
    DELETE_STATE = "delete.state", Delete,
        "Remove the state directory.",
        "The id becomes free again for a new container.";
}

/// Find a step by its key.
pub fn lookup(key: &str) -> Option<&'static StepDef> {
    ALL.iter().copied().find(|s| s.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_texts_present() {
        let mut keys: Vec<_> = ALL.iter().map(|s| s.key).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(n, keys.len(), "duplicate step key");
        for s in ALL {
            assert!(!s.what.is_empty() && !s.why.is_empty(), "{}", s.key);
            assert!(lookup(s.key).is_some());
        }
    }
}
