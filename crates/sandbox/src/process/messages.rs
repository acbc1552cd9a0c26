//! The messages of the parent/child channel ([`super::sync`] carries them):
//! the [`InitRequest`] that tells `nk-runtime init` what to build, and the
//! few replies each side makes. Apart from the channel and the init, so
//! that both depend on them and not on each other.

use crate::explain::Event;
use crate::linux::mounts::CgroupMountInfo;
use crate::linux::seccomp::Prepared;
use crate::logging::{Level, Record};
use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Name of the passed O_PATH descriptor of the container's exec.fifo (not
/// of its directory: the init holds it while processes of a shared pid
/// namespace can see it, and a directory would lead them to the host).
pub const FD_EXEC_FIFO: &str = "exec-fifo";
/// Name of the passed descriptor of the state directory's config.json.
pub const FD_CONFIG: &str = "config";
/// Name of the passed descriptor of the pid namespace to hand over into
/// (see [`InitRequest::pid_handover`]).
pub const FD_PIDNS: &str = "pidns";
/// Name of each passed v1 `tasks` file of [`InitRequest::join_cgroup`],
/// opened by the parent, in the same order.
pub const FD_CGROUP_TASKS: &str = "cgroup-tasks";

/// Create a container's init, or an extra process in a running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitKind {
    Create,
    Exec,
}

/// Everything the child needs, sent by the parent as the first message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitRequest {
    pub kind: InitKind,
    pub id: String,
    /// The container's state directory (holds config.json and exec.fifo).
    pub state_dir: PathBuf,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The process to run (create: config's process; exec: the merged one).
    pub process: Process,
    /// The seccomp filter to load, if any: compiled by the parent, so the
    /// child only loads bytes.
    pub seccomp: Option<Prepared>,
    /// Namespaces to join with setns, in order (type name, path).
    pub join: Vec<(String, PathBuf)>,
    pub new_timens: bool,
    pub new_cgroupns: bool,
    /// No mount namespace at all (none in linux.namespaces): the rootfs is
    /// built in the runtime's mount namespace and entered with chroot; an
    /// exec process chroots into `rootfs` too.
    #[serde(default)]
    pub host_mountns: bool,
    /// The container runs in a user namespace (ours or joined).
    pub userns: bool,
    pub no_pivot: bool,
    /// Do not join a new session keyring (--no-new-keyring at create).
    pub no_new_keyring: bool,
    /// linux.personality, applied to init and exec processes alike.
    #[serde(default)]
    pub personality: Option<oci_spec::runtime::LinuxPersonality>,
    /// linux.memoryPolicy, applied to init and exec processes alike.
    #[serde(default)]
    pub memory_policy: Option<oci_spec::runtime::LinuxMemoryPolicy>,
    pub preserve_fds: i32,
    /// Inherited descriptor of the connected --console-socket.
    pub console_fd: Option<i32>,
    /// Inherited descriptor connected to linux.seccomp.listenerPath.
    pub seccomp_listener_fd: Option<i32>,
    /// With a terminal and no console socket, send the master to the parent.
    pub tty_to_parent: bool,
    /// For the cgroup mount type.
    pub cgroup_mount: CgroupMountInfo,
    /// The config joins a pid namespace by path and the init was cloned
    /// outside it: once its root is the container's, it clones itself into
    /// that namespace (passed as FD_PIDNS) and the clone carries on.
    #[serde(default)]
    pub pid_handover: bool,
    /// v1 `tasks` files the init writes 0 into before anything else: its
    /// cgroup was made while it exec'd the runtime copy (a pure v1 host).
    /// The parent opens them and passes them ([`FD_CGROUP_TASKS`]): it has
    /// time to spare while the init makes its network namespace, the init
    /// has none. The paths are for the messages.
    #[serde(default)]
    pub join_cgroup: Vec<PathBuf>,
    /// `run`: the runtime starts the container itself, so the exec
    /// barrier is this channel (ToChild::Start), and there is no exec.fifo.
    #[serde(default)]
    pub release_on_channel: bool,
    /// This process's pid as the host sees it (for hook state).
    pub host_pid: i32,
    /// The container's init pid on the host (differs from host_pid for exec).
    #[serde(default)]
    pub init_pid: i32,
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Names of the descriptors attached to the Init message, in order.
    #[serde(default)]
    pub fd_names: Vec<String>,
    pub explain: bool,
    pub trace: bool,
    pub log_level: Level,
}

/// Prefix of the names of passed idmapped trees (`idmap:<mount index>`).
pub const FD_IDMAP_PREFIX: &str = "idmap:";

/// Messages from the parent to the child.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// Everything the child needs to set itself up.
    Init(Box<InitRequest>),
    /// The parent ran the prestart and createRuntime hooks.
    HooksDone,
    /// The parent took over the init cloned into the joined pid namespace
    /// (see ToParent::Reborn); its pid on the host.
    Reborn(i32),
    /// `run` releases the init at the exec barrier (see
    /// InitRequest::release_on_channel).
    Start,
}

/// Messages from the child to the parent.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToParent {
    /// A log line, printed by the parent.
    Log(Record),
    /// An explain or trace event.
    Event(Event),
    /// Mounts are done, pivot_root is next: do the runtime-side work that
    /// needs the container's namespaces (linux.netDevices, then the
    /// prestart and createRuntime hooks) now.
    Hooks,
    /// The pty master is attached (terminal without a console socket).
    Pty,
    /// Set up and about to wait at the barrier (create) or to exec (exec).
    Ready,
    /// Setup failed; the text is for the user.
    Error(String),
    /// The init cloned itself into the pid namespace it joins (its host pid
    /// follows) and exits: the clone carries on as the container's init.
    Reborn(i32),
    /// A child in a new user namespace is dumpable and waits: the parent
    /// may write its uid_map and gid_map now (before this, a rootless
    /// parent finds them owned by root).
    MapsReady,
}
