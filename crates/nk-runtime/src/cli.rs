//! The command line, in runc's shape: global flags before the verb, one
//! subcommand per verb. Go-style single-dash long flags (`-no-subreaper`,
//! `-bundle`) are accepted, as runc accepts them.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// nano-sandbox's OCI runtime.
#[derive(Parser, Debug)]
#[command(
    name = "nk-runtime",
    about = "nano-sandbox: an OCI container runtime that explains every step it takes",
    disable_version_flag = true,
    subcommand_required = false,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Directory for container state (default /run/nano-sandbox, or $XDG_RUNTIME_DIR/nano-sandbox when not root).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Write log lines to this file instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: String,
    /// Debug logging (same as --log-level debug).
    #[arg(long)]
    pub debug: bool,
    /// Log level: debug, info, warn or error (or NK_LOG_LEVEL).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Only errors are printed.
    #[arg(short, long)]
    pub quiet: bool,
    /// Treat linux.cgroupsPath as systemd's slice:prefix:name.
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Compile the seccomp profile every time instead of reusing the copy
    /// compiled before (see --seccomp-cache).
    #[arg(long)]
    pub no_seccomp_cache: bool,
    /// Directory of compiled seccomp filters (default
    /// /var/cache/nano-sandbox/seccomp, or ~/.cache/nano-sandbox/seccomp when
    /// not root); made 0700 if missing, not used if others can write it.
    #[arg(long, value_name = "DIR")]
    pub seccomp_cache: Option<PathBuf>,
    /// Rootless mode: true, false or auto (accepted as runc does).
    #[arg(long, value_name = "BOOL")]
    pub rootless: Option<String>,
    /// The criu binary for checkpoint and restore (default: criu on PATH).
    #[arg(long, value_name = "PATH")]
    pub criu: Option<String>,
    /// Narrate every step in plain words (or NK_EXPLAIN=1).
    #[arg(short = 'E', long)]
    pub explain: bool,
    /// Print each phase with its duration: --trace, --trace=json, or
    /// --trace=chrome[:FILE] (a timeline for Perfetto or chrome://tracing).
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "table")]
    pub trace: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The verbs. Only the verb on the command line has its arguments built
/// (`defer`): building every verb's clap definitions made up a third of a
/// short command's page faults. The argument structs below carry plain
/// comments, not doc comments: once built, a struct's doc comment would
/// replace the verb's description in its --help.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Create a container: set it up and park it before the program runs.
    Create(CreateArgs),
    /// Run the program of a created container.
    Start(StartArgs),
    /// Create, start and wait for a container (attached unless -d).
    Run(RunArgs),
    /// Print a container's OCI state as JSON.
    State(IdArg),
    /// Send a signal to a container.
    Kill(KillArgs),
    /// Delete a container and its resources.
    Delete(DeleteArgs),
    /// List containers.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Write a default config.json.
    Spec(SpecArgs),
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// List the processes in a container.
    Ps(PsArgs),
    /// Freeze every process of a container.
    Pause(IdArg),
    /// Thaw a paused container.
    Resume(IdArg),
    /// Change a running container's resource limits.
    Update(UpdateArgs),
    /// Print container events and statistics as JSON.
    Events(EventsArgs),
    /// Print the OCI features document of this runtime.
    Features,
    /// Checkpoint a running container with CRIU.
    Checkpoint(CheckpointArgs),
    /// Restore a container from a CRIU checkpoint.
    Restore(RestoreArgs),
    /// Check what this host supports, with fixes for what is missing.
    Check(CheckArgs),
    /// Build, show or remove the VM-mode guest image.
    #[command(name = "vm-image")]
    VmImage(VmImageArgs),
    /// The container side of create/exec (run by the runtime itself).
    #[command(hide = true)]
    Init,
    /// The VM-mode monitor process (run by the runtime itself).
    #[command(hide = true, name = "vm-monitor")]
    VmMonitor(PassthroughArgs),
}

// A container id.
#[derive(Args, Debug)]
pub struct IdArg {
    /// Container id.
    pub id: String,
}

// Options shared by create and run.
#[derive(Args, Debug, Clone)]
pub struct CreateCommon {
    /// Bundle directory (holds config.json); default the current directory.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's pid here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master (process.terminal).
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (for a ramfs root).
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra descriptors (3..3+N) to the container.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: i32,
    /// Isolation: container (default) or vm.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// VM mode: number of vCPUs.
    #[arg(long, value_name = "N")]
    pub vm_vcpus: Option<u32>,
    /// VM mode: memory in MiB.
    #[arg(long, value_name = "MIB")]
    pub vm_memory: Option<u32>,
    /// VM mode: start from a template snapshot (template, the default) or
    /// boot the kernel (cold).
    #[arg(long, value_name = "HOW")]
    pub vm_boot: Option<String>,
    /// Container id.
    pub id: String,
}

// create.
#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub common: CreateCommon,
}

// start.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Wait for the container to exit and return its status.
    #[arg(short, long)]
    pub attach: bool,
    /// Container id.
    pub id: String,
}

// run.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Detach: return once the container runs.
    #[arg(short, long)]
    pub detach: bool,
    /// Delete the container when it exits (the default when attached).
    #[arg(long)]
    pub rm: bool,
    /// Keep the container after it exits (attached run deletes it otherwise).
    #[arg(long)]
    pub keep: bool,
    /// Accepted for compatibility.
    #[arg(long)]
    pub no_subreaper: bool,
}

// kill.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal every process in the container's cgroup.
    #[arg(short, long)]
    pub all: bool,
    /// Container id.
    pub id: String,
    /// Signal name or number (default TERM).
    #[arg(default_value = "TERM")]
    pub signal: String,
}

// delete.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kill a running container first; succeed when it does not exist.
    #[arg(short, long)]
    pub force: bool,
    /// Container id.
    pub id: String,
}

// list.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// table or json.
    #[arg(short, long, default_value = "table")]
    pub format: String,
    /// Print only ids.
    #[arg(short, long)]
    pub quiet: bool,
}

// spec.
#[derive(Args, Debug)]
pub struct SpecArgs {
    /// Where to write config.json.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// A config for running without root (user namespace).
    #[arg(long)]
    pub rootless: bool,
}

// exec.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// process.json with the whole process (replaces the other options).
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Unix socket that receives the pty master.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Working directory.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Environment variable NAME=value (repeatable).
    #[arg(short, long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// UID[:GID].
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Additional group ids (comma separated or repeated).
    #[arg(short = 'g', long, value_name = "GID")]
    pub additional_gids: Vec<String>,
    /// Add a capability (repeatable).
    #[arg(short, long, value_name = "CAP")]
    pub cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub no_new_privs: bool,
    /// AppArmor profile.
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// SELinux process label (accepted; needs SELinux).
    #[arg(long, value_name = "LABEL")]
    pub process_label: Option<String>,
    /// Pass N extra descriptors (3..3+N).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: i32,
    /// Exec even into a paused container (the process starts frozen).
    #[arg(long)]
    pub ignore_paused: bool,
    /// Run CMD through /bin/sh -c.
    #[arg(long = "exec", value_name = "CMD")]
    pub exec_cmd: Option<String>,
    /// Ignored (cgroup of the exec is the container's).
    #[arg(long, hide = true)]
    pub cgroup: Option<String>,
    /// Container id.
    pub id: String,
    /// Command and arguments (default: an interactive shell).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

// ps.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// table or json.
    #[arg(short, long, default_value = "table")]
    pub format: String,
    /// Container id.
    pub id: String,
    /// Options passed to ps(1).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

// update.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// JSON file with linux.resources, or - for stdin.
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<String>,
    /// Memory limit (bytes, or with k/m/g suffix).
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory plus swap limit.
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Memory soft limit.
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Kernel memory limit (ignored on Linux 6.x).
    #[arg(long)]
    pub kernel_memory: Option<String>,
    /// Kernel TCP memory limit.
    #[arg(long)]
    pub kernel_memory_tcp: Option<String>,
    /// CPU shares (runc spells it --cpu-share).
    #[arg(long, alias = "cpu-share")]
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota (microseconds).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period (microseconds).
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU burst (microseconds).
    #[arg(long)]
    pub cpu_burst: Option<u64>,
    /// CPU idle: 1 schedules the container's tasks as SCHED_IDLE.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_idle: Option<i64>,
    /// Realtime period.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs allowed (cpuset).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed (cpuset).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes.
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight.
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// The L3 cache schema (Intel RDT; not supported).
    #[arg(long, hide = true)]
    pub l3_cache_schema: Option<String>,
    /// Memory bandwidth schema (Intel RDT; not supported).
    #[arg(long, hide = true)]
    pub mem_bw_schema: Option<String>,
    /// Container id.
    pub id: String,
}

// events.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Print statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Interval between statistics (e.g. 5s).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Container id.
    pub id: String,
}

// Arguments passed through untouched.
#[derive(Args, Debug)]
pub struct PassthroughArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

// The CRIU flags checkpoint and restore share (runc's).
#[derive(Args, Debug)]
pub struct CriuArgs {
    /// Directory for the CRIU image files (default ./checkpoint).
    #[arg(long, value_name = "DIR")]
    pub image_path: Option<PathBuf>,
    /// Directory for CRIU's work files and log (default: the image directory).
    #[arg(long, value_name = "DIR")]
    pub work_path: Option<PathBuf>,
    /// Allow open TCP connections.
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow shell jobs (a session or process group outside the container).
    #[arg(long)]
    pub shell_job: bool,
    /// Handle file locks.
    #[arg(long)]
    pub file_locks: bool,
    /// cgroups mode: soft (default), full, strict or ignore.
    #[arg(long, value_name = "MODE")]
    pub manage_cgroups_mode: Option<String>,
    /// Create a namespace, but do not restore its properties (network).
    #[arg(long, value_name = "NS")]
    pub empty_ns: Vec<String>,
    /// Deduplicate memory images.
    #[arg(long)]
    pub auto_dedup: bool,
    /// Restore memory lazily with userfaultfd (not supported: refused).
    #[arg(long)]
    pub lazy_pages: bool,
}

// checkpoint.
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Previous image directory for a dump after --pre-dump, relative to --image-path.
    #[arg(long, value_name = "DIR")]
    pub parent_path: Option<String>,
    /// Leave the container running after the checkpoint.
    #[arg(long)]
    pub leave_running: bool,
    /// Dump memory only and leave the container running.
    #[arg(long)]
    pub pre_dump: bool,
    /// ADDRESS:PORT of a CRIU page server to send memory to.
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub page_server: Option<String>,
    /// CRIU writes a zero byte here once lazy pages are ready (with --lazy-pages).
    #[arg(long, value_name = "FD", default_value_t = -1, allow_hyphen_values = true)]
    pub status_fd: i32,
    /// Container id.
    pub id: String,
}

// restore.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Bundle directory (holds config.json); default the current directory.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// Return once the container is restored.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the restored init's pid here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the restored terminal's master.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Do not become a subreaper while waiting.
    #[arg(long)]
    pub no_subreaper: bool,
    /// Accepted: CRIU switches the root itself.
    #[arg(long)]
    pub no_pivot: bool,
    /// LSM profile for the restored processes, TYPE:NAME.
    #[arg(long, value_name = "TYPE:NAME")]
    pub lsm_profile: Option<String>,
    /// LSM mount context for the restore.
    #[arg(long, value_name = "CONTEXT")]
    pub lsm_mount_context: Option<String>,
    /// container or vm; default: the image's (a VM-mode checkpoint holds nk-vm.json).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Container id.
    pub id: String,
}

// check.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

// vm-image.
#[derive(Args, Debug)]
pub struct VmImageArgs {
    /// build, status or clean.
    pub action: String,
}

/// Every long flag (and long alias) of any subcommand, read off the clap
/// definitions above: Go's flag package lets callers spell these with one dash.
fn long_flags() -> Vec<String> {
    fn walk(c: &clap::Command, out: &mut Vec<String>) {
        for a in c.get_arguments() {
            out.extend(a.get_long().map(String::from));
            out.extend(a.get_all_aliases().into_iter().flatten().map(String::from));
        }
        for s in c.get_subcommands() {
            walk(s, out);
        }
    }
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // build() adds the generated --help and --version.
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, &mut out);
    out
}

/// Turn `-flag` and `-flag=value` into `--flag...` for known long flags,
/// until the first plain argument after a verb's id (the container command).
pub fn normalize(argv: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    // Built only when a one-dash word appears (engines mostly send `--`).
    let mut long: Option<Vec<String>> = None;
    let mut passthrough = false;
    for (i, a) in argv.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(a);
            continue;
        }
        if a == "--" {
            passthrough = true;
            out.push(a);
            continue;
        }
        if let Some(rest) = a.strip_prefix('-') {
            if !rest.starts_with('-') && rest.len() > 1 {
                let name = rest.split('=').next().unwrap_or("");
                if long
                    .get_or_insert_with(long_flags)
                    .iter()
                    .any(|l| l == name)
                {
                    out.push(format!("-{a}"));
                    continue;
                }
            }
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The long flags runc's callers may send with one dash (the list this
    /// file kept by hand before).
    #[test]
    fn every_runc_long_flag_is_normalised() {
        let long = long_flags();
        for f in [
            "root",
            "log",
            "log-format",
            "debug",
            "systemd-cgroup",
            "rootless",
            "criu",
            "bundle",
            "pid-file",
            "console-socket",
            "no-pivot",
            "no-new-keyring",
            "preserve-fds",
            "detach",
            "rm",
            "keep",
            "no-subreaper",
            "image-path",
            "work-path",
            "parent-path",
            "leave-running",
            "tcp-established",
            "ext-unix-sk",
            "shell-job",
            "lazy-pages",
            "status-fd",
            "page-server",
            "file-locks",
            "pre-dump",
            "manage-cgroups-mode",
            "empty-ns",
            "auto-dedup",
            "lsm-profile",
            "lsm-mount-context",
            "attach",
            "all",
            "force",
            "format",
            "quiet",
            "process",
            "tty",
            "cwd",
            "env",
            "user",
            "additional-gids",
            "cap",
            "no-new-privs",
            "apparmor",
            "process-label",
            "resources",
            "memory",
            "memory-swap",
            "memory-reservation",
            "kernel-memory",
            "kernel-memory-tcp",
            "cpu-shares",
            "cpu-share",
            "cpu-idle",
            "cpu-quota",
            "cpu-period",
            "cpu-burst",
            "cpu-rt-period",
            "cpu-rt-runtime",
            "cpuset-cpus",
            "cpuset-mems",
            "pids-limit",
            "blkio-weight",
            "stats",
            "interval",
            "mode",
            "vm-vcpus",
            "vm-memory",
            "vm-boot",
            "explain",
            "trace",
            "log-level",
            "exec",
            "ignore-paused",
            "version",
            "help",
        ] {
            assert!(long.iter().any(|l| l == f), "--{f} is not defined");
        }
    }

    #[test]
    fn single_dash_long_flags() {
        let v = normalize(
            ["nk", "-root", "/x", "restore", "-no-subreaper", "-d", "id"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        assert_eq!(
            v,
            [
                "nk",
                "--root",
                "/x",
                "restore",
                "--no-subreaper",
                "-d",
                "id"
            ]
        );
        let v = normalize(
            ["nk", "kill", "id", "-9"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        assert_eq!(v[3], "-9");
    }

    #[test]
    fn parses_runc_shapes() {
        let c = Cli::try_parse_from([
            "nk",
            "--root",
            "/r",
            "--log",
            "/l",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "id1",
        ])
        .unwrap();
        assert!(matches!(c.command, Some(Command::Create(_))));
        let c = Cli::try_parse_from(["nk", "--trace=json", "run", "x"]).unwrap();
        assert_eq!(c.trace.as_deref(), Some("json"));
        let c = Cli::try_parse_from(["nk", "--trace", "run", "x"]).unwrap();
        assert_eq!(c.trace.as_deref(), Some("table"));
        let c = Cli::try_parse_from(["nk", "exec", "-t", "id", "sh", "-c", "echo hi"]).unwrap();
        match c.command {
            Some(Command::Exec(e)) => assert_eq!(e.command, ["sh", "-c", "echo hi"]),
            _ => panic!(),
        }
        let c = Cli::try_parse_from(["nk", "kill", "--all", "id", "9"]).unwrap();
        assert!(matches!(c.command, Some(Command::Kill(k)) if k.all && k.signal == "9"));
    }
}
