//! Every explanation text in one place. Code refers to steps by constant; the
//! renderer looks texts up by key, so a step narrated inside the container
//! (and sent to the parent as a key) prints the same words.
//!
//! Each step says what is done and why: what isolation it gives, and what
//! would go wrong without it. The concrete values (flags, paths, numbers) come
//! from the container's config at run time, as the step's detail.

/// The phases of a container's life, in the order they happen.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
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
    /// VM mode: the guest image, the accelerator, the monitor and the boot.
    Vm,
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
    /// checkpoint and restore: CRIU dumps or rebuilds the process tree.
    Checkpoint,
}

impl Phase {
    /// The heading printed for this phase.
    pub fn title(self) -> &'static str {
        match self {
            Phase::Spec => "spec parsing",
            Phase::State => "state",
            Phase::Cgroups => "cgroup setup",
            Phase::Clone => "clone",
            Phase::Vm => "VM boot",
            Phase::Namespaces => "namespace setup",
            Phase::Mounts => "mounts",
            Phase::PivotRoot => "pivot_root",
            Phase::Hooks => "hooks",
            Phase::Process => "process attributes",
            Phase::ExecBarrier => "exec barrier",
            Phase::Exec => "exec",
            Phase::Signals => "signals and exit",
            Phase::Delete => "teardown",
            Phase::Checkpoint => "checkpoint/restore (CRIU)",
        }
    }
    /// Why the narration comes back to a phase it has already shown: the
    /// parent and the child take turns, and some work can only be done
    /// after another phase. Printed under the repeated heading.
    pub fn again(self) -> &'static str {
        match self {
            Phase::State => "Now that the init is set up and about to park, the container is recorded as created.",
            Phase::Mounts => "After pivot_root, the last mounts are made on the new root: the console, sysctls through the container's own /proc, read-only and masked paths, a read-only root.",
            Phase::Hooks => "Hooks run at the points of the lifecycle they are named for: prestart, createRuntime and createContainer before pivot_root, startContainer just before the program, poststart once it runs, poststop at delete.",
            Phase::ExecBarrier => "The init parked at the barrier above; now the runtime opens it (what `start` does, and `run` does for itself).",
            Phase::Delete => "Teardown goes on after the poststop hooks.",
            Phase::Signals => "The program is still running: more signals and waiting.",
            _ => "The parent and the child take turns: this phase goes on where the other left off.",
        }
    }
}

/// The plain-word terms of these texts a newcomer may not know, each
/// explained in docs/glossary.md (tests/docs.rs checks both: that each
/// appears in a text here, and has its entry). Identifiers, calls and
/// capitalised words (`CLONE_PIDFD`, `setns()`, `RCU`) are found by that test
/// without being listed.
pub static TERMS: &[&str] = &[
    "namespace",
    "user namespace",
    "pid namespace",
    "mount namespace",
    "UTS namespace",
    "time namespace",
    "cgroup",
    "capability",
    "bounding set",
    "ambient",
    "file capabilities",
    "setuid",
    "seccomp",
    "pidfd",
    "signalfd",
    "subreaper",
    "zombie",
    "pid 1",
    "keyring",
    "session keyring",
    "RCU grace period",
    "memfd",
    "tmpfs",
    "devpts",
    "device node",
    "mknod",
    "pseudo-terminal",
    "fifo",
    "exec barrier",
    "sync channel",
    "socketpair",
    "async-signal-safe",
    "bind mount",
    "mount point",
    "propagation",
    "rslave",
    "idmapped mount",
    "eBPF",
    "OOM killer",
    "hard limit",
    "umask",
    "sysctl",
    "execution domain",
    "I/O scheduler",
    "AppArmor",
    "SELinux",
    "mandatory access control",
    "flock",
    "chroot",
    "hook",
    "bundle",
    "rootfs",
    "init",
    "microvm",
    "initramfs",
    "vmlinux",
    "agent",
    "monitor",
    "virtio",
    "9p",
    "overlay",
];

/// The legend printed above the narration: who each `[role]` tag means.
pub const ROLES_LEGEND: &str = "Roles: [host] is the runtime acting on the host with no container process of its own (create before its clone, start, kill, delete); [parent] is the runtime process that cloned the container's process (create after the clone, run, exec), so under `run` the steps of start and delete are the parent's; [child] is the container's process until it becomes your program.";

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
        "Claim the container id: write state.json in a private directory, lock it (flock) and rename(2) it into the state root with RENAME_NOREPLACE.",
        "The rename is atomic: of two creates of one id exactly one wins. Every later command (state, start, kill, delete) finds the container by this directory and takes the same lock.";
    STATE_CREATED = "state.created", State,
        "Record the container as created in state.json: the init's pid and that pid's start time.",
        "Later commands derive the status from this pid. The start time (field 22 of /proc/<pid>/stat) tells the container's init from an unrelated process that reused the pid after it died.";
    PID_FILE = "pid_file", State,
        "Write the init's pid to --pid-file (a new file under a random name, renamed into place).",
        "Engines read this file the moment create returns; the rename makes sure they never see a half-written number. The temporary name is random and opened O_CREAT|O_EXCL|O_NOFOLLOW: another user who can write that directory cannot plant a symlink that root would write through.";
    CGROUP_CREATE = "cgroup.create", Cgroups,
        "Create the container's cgroup directories (linux.cgroupsPath, default /nano-sandbox/<id>).",
        "Limits belong to a cgroup, not to a process. Making the cgroup first, and moving the child into it before it runs any code of its own, means no moment runs unlimited.";
    CGROUP_WRITE = "cgroup.write", Cgroups,
        "Write one value into a cgroup control file.",
        "The kernel enforces what is written here: the memory limit, CPU shares and quota, the maximum number of pids, the device allow-list. A new v1 cpuset cgroup has no CPUs at all, so cpuset.cpus and cpuset.mems are copied from the parent first.";
    CGROUP_DEVICE_RULES = "cgroup.device_rules", Cgroups,
        "Write the device allow-list of the v1 devices cgroup: `a` into devices.deny to refuse every device, then one line per allowed device into devices.allow.",
        "A rule has three fields: the type, c (character device), b (block device) or a (all); the device numbers major:minor (the driver, then the device; * for any); the access letters, r (read), w (write) and m (mknod, create the node). So `c 1:3 rwm` lets the container open and create /dev/null, and `c *:* m` lets it create any character node but open none that is not allowed too. The kernel checks every open and mknod of a device against this list, whatever the process's privileges.";
    CGROUP_DEVICES = "cgroup.devices", Cgroups,
        "Build an eBPF program from the device rules and attach it to the cgroup: bpf(BPF_PROG_LOAD, BPF_PROG_TYPE_CGROUP_DEVICE), then bpf(BPF_PROG_ATTACH).",
        "cgroup v2 has no devices files. The kernel runs this program whenever a process of the cgroup opens or creates a device node, and only the allowed devices pass: a node for the host's disk would be useless inside.";
    CGROUP_JOIN = "cgroup.join", Clone,
        "Put the container's process in its cgroup: clone3(CLONE_INTO_CGROUP) starts it in the cgroup2 directory, the child writes 0 into each v1 tasks file itself, or the parent writes its pid into cgroup.procs.",
        "Membership is inherited by every process the container will ever fork, so the whole container is accounted and limited together. Being born in the cgroup, or moving oneself, takes no global lock, where moving another pid waits for an RCU grace period (about 10 ms).";
    EXE_PROTECT = "exe.protect", Clone,
        "Give the child a copy of the runtime it cannot write: a detached read-only mount of /proc/self/exe (open_tree + mount_setattr), or a sealed memfd copy where the kernel refuses that.",
        "The child runs runtime code inside the container, and there /proc/self/exe leads to the file it runs from. If that were the binary on the host, a hostile container could open it for writing and replace the runtime for everyone (CVE-2019-5736).";
    CPU_LEAVE = "cpu.leave", Clone,
        "If the new child was placed on the runtime's CPU, move the runtime to another while it claims the state and makes the cgroup.",
        "The kernel starts a child on its parent's CPU, and may keep it waiting there while another CPU idles. With the runtime elsewhere, the child's start and the runtime's state and cgroup work run at once; the runtime's old CPU mask is back before it starts any other process, and the child never had the narrowed one.";
    CLONE = "clone", Clone,
        "clone3() the container's first process into new namespaces, with CLONE_PIDFD.",
        "The namespaces are created together with the process, so it never sees the host's pid table, mounts, network or hostname; in a new pid namespace it is pid 1. The pidfd names exactly this process, so a later signal or wait can never hit a recycled pid.";
    CLONE_JOIN = "clone.join", Clone,
        "clone3() a process with no new namespaces, with CLONE_PIDFD: it enters existing ones with setns(), or is cloned by an intermediate that did.",
        "exec, and a container that only joins namespaces (as a pod's containers do), creates none. For exec an intermediate process joins them all and clones the child, which is born inside: setns(CLONE_NEWPID) only affects the caller's future children, and a process that joined the pid namespace before the mount namespace would show the container a process whose root is the host's.";
    VM_IMAGE = "vm.image", Vm,
        "Find the guest image: the host's kernel as an uncompressed vmlinux, and an initramfs holding the static agent as /init and the virtio, 9p and overlay modules (built once, then cached).",
        "In VM mode the container gets a kernel of its own, a Debian kernel that QEMU boots directly. Decompressing and packing it once rather than at every boot saves seconds per container under emulation.";
    VM_ACCEL = "vm.accel", Vm,
        "Choose the accelerator: KVM when a short probe boot under it reaches the agent, otherwise QEMU's TCG emulation (the answer is cached).",
        "Hardware virtualisation runs the guest at native speed. A /dev/kvm that cannot boot an ordinary guest (such as a software kvm_pvm) must not be trusted on sight, so it is tried once.";
    VM_SHARE = "vm.share", Vm,
        "Choose how the bundle reaches the guest: virtio-fs (virtiofsd, the guest's page cache in front) where virtiofsd is installed and the guest kernel has the module, otherwise virtio-9p; the annotation org.nano-sandbox.vm.share forces one.",
        "The guest has its own kernel, so the rootfs must cross as a filesystem protocol. 9p sends every operation through QEMU; virtio-fs is FUSE over shared memory, served by a separate sandboxed daemon, and much faster for metadata-heavy work.";
    VM_TEMPLATE = "vm.template", Vm,
        "Choose how the VM starts: from a template snapshot of a guest booted once to its agent (cached per kernel, agent, memory size, vCPUs, number of network cards and QEMU; built on first use, the one with the guest's cards by the monitor), or a cold boot when asked (--vm-boot=cold, annotation org.nano-sandbox.vm.boot=cold), when the share must be virtio-fs, or when no template can be made.",
        "Under emulation most of a VM's start is its kernel booting. A template boots once: its memory is a file, and QEMU saves only the device state beside it. A clone maps that file copy-on-write and loads the device state, so its guest resumes at the point where the agent waits for the host, in a fraction of a boot; no clone ever writes the template.";
    VM_BOOT = "vm.boot", Vm,
        "How the VM started: restored from the template (QEMU with the same machine, -incoming defer, migrate-incoming of the device state, the container's share on the same 9p device), then woken with fresh host entropy and the host's clock before anything runs; or booted cold, and why.",
        "Every clone resumes with the template's random-number state and clock: without the agent reseeding the kernel's CRNG (RNDADDENTROPY, RNDRESEEDCRNG) and setting the clock, two containers would draw the same random numbers. A clone's network cards resume with the template's MACs, so the agent gives each its veth's MAC before it brings it up. A VM whose restore fails boots cold instead; the create never fails for the template's sake.";
    VM_MONITOR = "vm.monitor", Vm,
        "Start the monitor (nk-runtime vm-monitor) in the container's cgroup; it boots QEMU's microvm and has the guest's agent create the container.",
        "Engines expect one host process that is the container: it lives as long as the container, takes its signals and exits with its status. The monitor is that process, QEMU is its child in the same cgroup, and inside the guest the agent builds the container with this same library.";
    VM_NET = "vm.net", Vm,
        "Bring the container's network namespace into the guest: the monitor joins the engine's (or makes a new one, which Docker's prestart hook fills), gives each Ethernet link a tap with a tc mirred redirect in both directions, and the agent gives the guest's virtio-net card the link's MAC, addresses, routes and MTU; Docker's DNS address 127.0.0.11 is relayed to the host when the resolv.conf names it.",
        "A VM has its own kernel and so its own network stack: it cannot be put in the engine's namespace. The tap carries the veth's frames into the guest unchanged, so the engine's bridge, port forwarding and DNS work as for a container. Docker's embedded DNS lives in iptables rules of the namespace that the guest's packets never cross, so the agent and the monitor carry its queries over the control port; a namespace nobody configured gives only loopback.";
    VM_POD = "vm.pod", Vm,
        "Run the container in the VM of the pod it joins: its namespace paths name a VM-mode container's (or the network namespace a pod VM carries, or the CRI's sandbox annotation names one), so its monitor hands it to that VM's monitor, which attaches its rootfs and bind mounts in the VM's share, and the agent creates it with the pod's namespaces as the guest names them.",
        "The pod's namespaces live in that guest's kernel and cannot be joined from another VM. One VM per pod also boots once, not once per container, and its containers reach each other on localhost as in a pod of containers.";
    INIT_EXEC = "init.exec", Clone,
        "The child execs the runtime's hidden `init` command from the protected copy and reads its instructions (JSON) from the sync channel.",
        "Between clone and exec a child may only make raw, async-signal-safe system calls: it joins its cgroup, sets PR_SET_PDEATHSIG and, in a user namespace, waits for its id maps, then execs. The SOCK_SEQPACKET socketpair carries the request down, and log lines, hook requests, these explanations and errors back up, one whole message at a time.";
    USERNS_MAP = "userns.map", Clone,
        "Write the child's /proc/<pid>/uid_map and gid_map from the parent (setgroups is denied first when not root).",
        "A new user namespace starts with no ids mapped and the child cannot map itself. Root in the container becomes an ordinary id on the host: a process that escapes holds no privilege there.";
    NS_JOIN = "ns.join", Namespaces,
        "setns() into an existing namespace named by a path in linux.namespaces (or, for exec, the container's own).",
        "Joining lets containers share one network or IPC namespace, as the containers of a Kubernetes pod do, instead of each getting its own.";
    NS_TIME = "ns.time", Namespaces,
        "unshare(CLONE_NEWTIME) and write linux.timeOffsets to /proc/self/timens_offsets; the program enters the new time namespace at its execve.",
        "A time namespace shifts CLOCK_MONOTONIC and CLOCK_BOOTTIME for the container only, for example so a migrated container keeps counting from where it was. The offsets can only be written before any process is inside, hence before exec.";
    NS_CGROUP = "ns.cgroup", Namespaces,
        "unshare(CLONE_NEWCGROUP), after the process has joined its cgroup.",
        "The container's own cgroup becomes the root of what it sees in /proc/self/cgroup and in a cgroup mount, so it does not learn the host's cgroup tree or where it sits in it.";
    KEYRING = "keyring", Namespaces,
        "Join a new session keyring named after the container: keyctl(KEYCTL_JOIN_SESSION_KEYRING).",
        "Kernel keyrings are not namespaced. Without this the container would share the session keyring of whoever ran the runtime and could read the keys stored there (--no-new-keyring skips it).";
    HOSTNAME = "hostname", Namespaces,
        "sethostname() and setdomainname() inside the new UTS namespace.",
        "The name is private to the container's UTS namespace; without that namespace this call would rename the host.";
    MOUNT_PROPAGATION = "mount.propagation", Mounts,
        "Make the whole mount tree slave or private (linux.rootfsPropagation, default rslave).",
        "The new mount namespace starts as a copy of the host's. Cutting propagation stops the container's mounts from appearing on the host; with rslave the host's later mounts still show inside.";
    ROOTFS_BIND = "rootfs.bind", Mounts,
        "Bind-mount the rootfs onto itself.",
        "pivot_root needs the new root to be a mount point; a recursive bind mount of the bundle's rootfs directory makes it one.";
    MOUNT = "mount", Mounts,
        "Mount an entry of config.json inside the rootfs.",
        "Each destination is resolved with openat2(RESOLVE_IN_ROOT), so a symlink planted in the image cannot send the mount onto the host (CVE-2021-30465).";
    DEVICES = "devices", Mounts,
        "Create the default device nodes and the linux.devices list in /dev (mknod, or a bind mount of the host's node inside a user namespace).",
        "The container's /dev is a fresh tmpfs holding only what it may use: null, zero, full, random, urandom, tty and the devices asked for. The host's disks are simply absent; the device cgroup also refuses any other node.";
    DEV_SYMLINKS = "devices.symlinks", Mounts,
        "Create the /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr and /dev/ptmx symlinks.",
        "Programs expect these names; they point into /proc/self/fd and the container's own devpts.";
    CONSOLE = "console", Mounts,
        "Allocate a pseudo-terminal in the container's devpts, make it the process's stdio and /dev/console, and hand over its master.",
        "With process.terminal the program gets a real tty; the master end goes to the engine over --console-socket (SCM_RIGHTS), or to this runtime, which bridges it to your terminal.";
    PIVOT_ROOT = "pivot_root", PivotRoot,
        "pivot_root() into the rootfs and detach the old root.",
        "After this the host's filesystem is not reachable by any path; unlike chroot, there is no old root left to climb back to.";
    PID_HANDOVER = "pid.handover", PivotRoot,
        "setns() into the pid namespace of linux.namespaces and clone3(CLONE_PARENT) the init there, now that its root is the container's; the first clone exits.",
        "A process of a joined pid namespace can see every newcomer. The init is cloned outside it and builds the rootfs there; entering before pivot_root would show the other containers a process whose root is the host's, which CAP_SYS_PTRACE turns into a way out.";
    HOST_CHROOT = "chroot", PivotRoot,
        "chroot() into the rootfs, because the container has no mount namespace of its own (linux.namespaces has no mount entry).",
        "pivot_root would swap the root of the runtime's own mount namespace, that is the host's. chroot changes only this process's root; the mounts under the rootfs stay visible on the host until delete removes them.";
    NO_PIVOT = "no_pivot", PivotRoot,
        "Move the rootfs onto / with MS_MOVE and chroot() into it (--no-pivot).",
        "For a root on ramfs, where pivot_root is not allowed. It is weaker: the old root stays in the mount namespace, under the new one.";
    MASKED_PATHS = "paths.masked", Mounts,
        "Hide linux.maskedPaths: /dev/null over files, an empty read-only tmpfs over directories.",
        "Files such as /proc/kcore and /proc/keys reveal host memory or secrets; masking makes them read as empty.";
    READONLY_PATHS = "paths.readonly", Mounts,
        "Bind linux.readonlyPaths onto themselves and remount them read-only, keeping nosuid, nodev and noexec.",
        "/proc/sys and friends would let the container retune the host kernel; read-only keeps them visible but unchangeable. A remount replaces every per-mount flag, so the ones the mount had are passed again.";
    ROOT_READONLY = "root.readonly", Mounts,
        "Remount the root read-only (root.readonly), keeping its nosuid, nodev and noexec.",
        "The image cannot be changed from inside; writes go only to the mounts made writable on purpose.";
    SYSCTL = "sysctl", Mounts,
        "Write linux.sysctl values under /proc/sys.",
        "Only namespaced sysctls (net.*, kernel.shm*, kernel.msg*, fs.mqueue.*) are accepted, and only with their namespace: the values change the container's namespaces, never the host.";
    NET_DEVICES = "netdevices", Namespaces,
        "Move each device of linux.netDevices from the runtime's network namespace into the container's (RTM_NEWLINK with IFLA_NET_NS_FD and its new name), then add its addresses again and bring it up if it was up.",
        "The container gets a host device (a NIC, a dummy, a CNI-made link) for itself. The kernel drops addresses on a move, so they are carried over by hand; nothing moves back at delete: a network namespace that goes destroys its virtual devices and returns physical ones to the host's initial namespace.";
    HOOK = "hook", Hooks,
        "Run an OCI hook with the container's state JSON on its stdin.",
        "Hooks let the engine plug in at fixed points (Docker's prestart hook sets up networking). prestart, createRuntime, poststart and poststop run in the runtime's namespaces; createContainer and startContainer inside the container. A failure before the program runs fails the command; after, it is a warning.";
    RLIMITS = "rlimits", Process,
        "setrlimit() each of process.rlimits.",
        "Limits such as RLIMIT_NOFILE bound one process rather than the cgroup; they are inherited by everything it starts. Raising a hard limit needs CAP_SYS_RESOURCE.";
    OOM_SCORE = "oom_score_adj", Namespaces,
        "Write process.oomScoreAdj to /proc/self/oom_score_adj.",
        "Tells the kernel's OOM killer how willing it should be to pick this container first when the host runs out of memory.";
    MEMPOLICY = "mempolicy", Process,
        "set_mempolicy() with linux.memoryPolicy's mode, nodes and flags.",
        "NUMA placement: which memory nodes the container's pages come from (bound, interleaved, preferred). The policy is inherited by every child and kept across execve, so setting it once before the program starts covers the whole container.";
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
        "setgroups(), setresgid() and setresuid() to the process.user ids (with PR_SET_KEEPCAPS), then the umask.",
        "The program runs with the ids the config asks for. Groups go first, while the process may still change them; the kept capabilities are trimmed right after.";
    CAPS = "capabilities", Process,
        "Set the capability sets: the bounding set was cut first; now effective, permitted and inheritable with capset(), then ambient.",
        "Root in a container keeps only the privileges it is given; dropping from the bounding set makes the loss permanent for every descendant.";
    NO_NEW_PRIVS = "no_new_privs", Process,
        "prctl(PR_SET_NO_NEW_PRIVS).",
        "After this no execve can gain privileges: setuid binaries and file capabilities stop working inside.";
    SECCOMP_COMPILE = "seccomp.compile", Process,
        "Compile linux.seccomp to a BPF program with libseccomp, or take the program compiled for the same profile before from the runtime's cache (/var/cache/nano-sandbox/seccomp unless --seccomp-cache names another directory).",
        "Compiling an engine's default profile of a few hundred syscalls takes milliseconds, and engines send the same one to every container. It is done before anything is created, so a profile that does not compile leaves nothing behind. The cache key is a SHA-256 of the profile, this runtime build, libseccomp and the kernel; the directory is writable by the runtime's user alone and mounted in no container, and an entry whose header, key, length or checksum is wrong is compiled afresh, never trusted.";
    SECCOMP = "seccomp", Process,
        "Load the compiled filter with seccomp(SECCOMP_SET_MODE_FILTER).",
        "The filter checks every system call against the profile; a denied call fails (for example with EPERM) or kills the process, whatever its capabilities. It is loaded right before execve (before `create` returns when a notify listener waits for its descriptor), so a profile need not allow the runtime's own calls such as openat2 or close_range; without no_new_privs, CAP_SYS_ADMIN is held for the load alone.";
    CLOSE_FDS = "fds.close", Process,
        "Mark every descriptor above stdio (and --preserve-fds) close-on-exec.",
        "A descriptor of the runtime that survived into the container would be a door back to the host (CVE-2024-21626).";
    CWD = "cwd", Process,
        "chdir() into process.cwd, resolved inside the root with openat2(RESOLVE_IN_ROOT).",
        "The working directory must lie inside the container: a cwd naming a leaked descriptor such as /proc/self/fd/7 would give the program a handle on the host's filesystem (CVE-2024-21626).";
    BARRIER_WAIT = "barrier.wait", ExecBarrier,
        "Park at the exec barrier: open exec.fifo for writing, which blocks until `start` opens it for reading.",
        "create and start are two commands: the process is fully set up and waits here, so start only has to open the fifo and the program runs at once.";
    BARRIER_OPEN = "barrier.open", ExecBarrier,
        "Open exec.fifo and read it to its end: the init writes one byte when released, and the fifo closes when its execve succeeds.",
        "start returns only once the program really runs; an init that died instead is reported as an error, not as a started container.";
    EXEC = "exec", Exec,
        "execve() the container's program.",
        "The runtime's code is replaced by the program; from here on the container is just a process tree in namespaces and a cgroup.";
    EXEC_JOIN = "exec.join", Namespaces,
        "Join the running container: an intermediate process enters its cgroup, setns() into each of its namespaces that differs from the runtime's own (mount last), then clones the exec process inside them.",
        "`exec` adds a process to an existing container: it must see the same pids, mounts, network and limits as the init. No process may appear in the container's pid namespace while its root or cwd is still on the host: a container process with CAP_SYS_PTRACE could reach the host through /proc/PID/root.";
    WAIT = "wait", Signals,
        "Wait for the container's exit: poll() its pidfd and a signalfd, and forward each signal the runtime receives to the container's process.",
        "The pidfd is armed before the child can run, so even a program that exits at once is never missed. The forwarded signals were blocked before the clone and are read from the signalfd, so Ctrl-C reaches the container rather than killing the runtime. `run` is also a child subreaper (PR_SET_CHILD_SUBREAPER): a descendant orphaned outside a pid namespace of its own is re-parented to it, not to the host's init, and it reaps it.";
    SIGNAL_FORWARD = "signal.forward", Signals,
        "Forward a signal that reached the runtime to the container's process.",
        "You signal the runtime (Ctrl-C, a supervisor's SIGTERM), but the program should decide what to do; the runtime keeps waiting so it can report the real exit status.";
    KILL = "kill", Signals,
        "Send a signal to the container's init with pidfd_send_signal() (or, with --all, to every process in its cgroup).",
        "pid 1 of a pid namespace receives only the signals it has a handler for (SIGKILL always works from outside); stopping a container therefore often takes SIGTERM, then SIGKILL.";
    EXIT = "exit", Signals,
        "The process exited: waitid(P_PIDFD) reaps it and returns its status.",
        "The status is the program's exit code, or 128+N when a signal N killed it, as shells report it. Until reaped, a dead process stays a zombie holding its pid.";
    DELETE_KILL = "delete.kill", Delete,
        "SIGKILL the init that is still there (delete --force, or created and never started) and wait for it to exit.",
        "Nothing can be freed while a process still uses it. SIGKILL cannot be caught, and when pid 1 of a pid namespace dies the kernel kills every other process in it.";
    DELETE_CGROUP = "delete.cgroup", Delete,
        "Kill leftover processes and remove the cgroup directories.",
        "A cgroup with members cannot be removed; an orphaned cgroup would keep its limits and counters forever.";
    DELETE_HOST_MOUNTS = "delete.host_mounts", Delete,
        "Unmount (MNT_DETACH, deepest first) what the container mounted under its rootfs in the runtime's mount namespace.",
        "Without a mount namespace of its own the container's mounts live on the host and outlive it. Only mounts that were not under the rootfs before create are removed, so a rootfs that is itself a mount point stays.";
    CRIU_DUMP = "criu.dump", Checkpoint,
        "Ask CRIU to dump the container's process tree into the image directory: start `criu swrk` on a socketpair and send it a DUMP (or PRE_DUMP) request naming the init, the root, the freezer cgroup and the external mounts and namespaces.",
        "CRIU freezes every process of the cgroup, so none escapes or changes while it is read, then saves memory, descriptors, sockets and namespaces as image files. Without --leave-running it kills the tree afterwards and the container is deleted; --pre-dump copies memory while the container runs, so the final dump has less to copy.";
    CRIU_RESTORE = "criu.restore", Checkpoint,
        "Ask CRIU to rebuild the process tree from the image directory: a RESTORE request with a bind mount of the rootfs as root, CRIU itself moved into the new container's cgroup, and the old stdio pipes mapped to the runtime's own.",
        "The processes come back with their pids, memory and open files as they were dumped, as children of the runtime (rst_sibling), so it can wait for the init. At CRIU's setup-namespaces point the prestart and createRuntime hooks run; at post-restore the new init is recorded.";
    VM_CRIU_KIT = "vm.criu_kit", Checkpoint,
        "Find the CRIU kit for the guest in the VM cache, or assemble it once from the host's criu: criu, ip, xtables-nft-multi, tar, gzip and sh with every library ldd lists, iptables' extensions, and the guest kernel's socket-diag, nf_tables and conntrack modules in load order.",
        "A VM-mode container's processes live in the guest, so CRIU must run there; the guest image carries none of it, since every boot would pay for it and only checkpoint and restore need it. The kit is keyed by its inputs (so a new criu gives a new kit) and is shared into the guest read-only for these two verbs only.";
    VM_CHECKPOINT = "vm.checkpoint", Checkpoint,
        "Ask the VM monitor to checkpoint the container: it attaches the image directory and the CRIU kit in the VM's share, and the agent links the kit into the guest, loads its modules and has CRIU dump the container there, as on a host; without --leave-running the VM is then stopped and the container deleted, and the image directory gets nk-vm.json, the VM-mode record a restore reads.",
        "QEMU 7.2 refuses to migrate a VM while its share is mounted (9p) or at all (virtio-fs), and a running container's rootfs is on that share: the whole-VM migration stream cannot be taken. CRIU inside the guest dumps the container alone, through the share, so the image is an ordinary CRIU image plus the VM's size and settings.";
    VM_RESTORE = "vm.restore", Vm,
        "The new VM (started as create starts one) has the image directory and the CRIU kit in its share from the start; the agent builds the container's bundle as create does, then has CRIU restore the dumped process tree into it, as its own child with new stdio pipes in place of the dumped ones. The container is running at once.",
        "The container goes on from the point it was dumped at, in a VM of the size recorded in the image; exec, kill, pause and delete work on it as on any VM-mode container, since the agent watches the restored init as it watches a created one.";
    DELETE_STATE = "delete.state", Delete,
        "Remove the state directory.",
        "The id becomes free again for a new container.";
}

/// The detail line of one device cgroup rule: the file, the rule, and the
/// device it names when it is a well-known one.
pub fn device_rule_detail(file: &str, line: &str) -> String {
    let mut w = line.split_whitespace();
    let (kind, numbers) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
    let name = match (kind, numbers) {
        ("a", _) => "every device",
        ("c", "*:*") => "any character device",
        ("b", "*:*") => "any block device",
        ("c", "1:3") => "/dev/null",
        ("c", "1:5") => "/dev/zero",
        ("c", "1:7") => "/dev/full",
        ("c", "1:8") => "/dev/random",
        ("c", "1:9") => "/dev/urandom",
        ("c", "5:0") => "/dev/tty",
        ("c", "5:1") => "/dev/console",
        ("c", "5:2") => "/dev/ptmx",
        ("c", "10:200") => "/dev/net/tun",
        ("c", "10:229") => "/dev/fuse",
        ("c", "136:*") => "/dev/pts/*",
        _ => "",
    };
    if name.is_empty() {
        format!("{file}: {line}")
    } else {
        format!("{file}: {line} ({name})")
    }
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
        let mut whats: Vec<_> = ALL.iter().map(|s| s.what).collect();
        whats.sort();
        whats.dedup();
        assert_eq!(n, whats.len(), "two steps say the same thing");
        for s in ALL {
            assert!(!s.what.is_empty() && !s.why.is_empty(), "{}", s.key);
            assert!(lookup(s.key).is_some());
        }
    }
}
