//! `check`: a host doctor. Each check probes the kernel for real (a system
//! call, a file under /proc or /sys) rather than guessing from the version,
//! says what it found, and for anything missing, how to fix it. Checks the
//! default bundle (`nk-runtime spec`) depends on are "required": the command
//! exits 1 when one of them fails, because that bundle could not run here.

use crate::cli::CheckArgs;
use crate::report::Globals;
use sandbox::cgroups::layout::{self, Kind};
use serde::Serialize;
use std::ffi::CString;
use std::path::Path;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    /// Present and usable.
    Ok,
    /// Usable, with a limitation worth knowing.
    Warn,
    /// Missing or unusable.
    Missing,
    /// A fact, neither good nor bad.
    Info,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Missing => "MISSING",
            Status::Info => "info",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Check {
    name: &'static str,
    /// What uses it, in a few words.
    area: &'static str,
    status: Status,
    /// The default bundle needs it.
    required: bool,
    detail: String,
    /// How to get it, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn check(
    name: &'static str,
    area: &'static str,
    status: Status,
    required: bool,
    detail: impl Into<String>,
    fix: Option<&str>,
) -> Check {
    Check {
        name,
        area,
        status,
        required,
        detail: detail.into(),
        fix: if status == Status::Ok || status == Status::Info {
            None
        } else {
            fix.map(String::from)
        },
    }
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn errno() -> nix::errno::Errno {
    nix::errno::Errno::last()
}

/// Run `f` in a forked child and return whether it exited 0. Probes that
/// change the calling process (unshare, setuid) run there.
fn in_child(f: impl FnOnce() -> bool) -> bool {
    // SAFETY: the child only runs `f` (raw system calls) and _exit; this
    // process has a single thread at this point.
    match unsafe { libc::fork() } {
        0 => {
            let ok = f();
            // SAFETY: _exit never returns and runs no destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        pid if pid > 0 => {
            let mut st = 0;
            // SAFETY: wait for the child we just forked.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0
        }
        _ => false,
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| {
            format!(
                "{} {}",
                u.release().to_string_lossy(),
                u.machine().to_string_lossy()
            )
        })
        .unwrap_or_default()
}

fn cgroups(rootless: bool) -> Vec<Check> {
    let mi = read("/proc/self/mountinfo");
    let l = layout::detect_host(&mi, Path::new("/sys/fs/cgroup"));
    let mut out = vec![check(
        "cgroups",
        "resource limits",
        if l.kind == Kind::None {
            Status::Missing
        } else {
            Status::Ok
        },
        !rootless,
        l.describe(),
        Some("mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup), or the v1 hierarchies"),
    )];
    if l.kind == Kind::None {
        return out;
    }
    // Controllers: v1 hierarchies by name, plus what the cgroup2 root offers.
    let mut have: Vec<String> = l.v1.keys().cloned().collect();
    for c in &l.unified_controllers {
        if !have.contains(c) {
            have.push(c.clone());
        }
    }
    let want = [
        ("cpu", "cpu shares and quota"),
        ("cpuset", "cpus and mems"),
        ("memory", "memory limits"),
        ("pids", "pids.max"),
        ("devices", "the device allow-list"),
        ("freezer", "pause and resume"),
        ("blkio", "block I/O weights"),
        ("hugetlb", "hugepage limits"),
    ];
    let unified_only = l.kind == Kind::Unified;
    let missing: Vec<String> = want
        .iter()
        .filter(|(c, _)| {
            let alias = match (*c, unified_only) {
                ("blkio", true) => "io",
                // On v2 the device list is an eBPF program and the freezer is
                // cgroup.freeze: both are always there.
                ("devices", true) | ("freezer", true) => return false,
                (c, _) => c,
            };
            !have.iter().any(|h| h == alias)
        })
        .map(|(c, what)| format!("{c} ({what})"))
        .collect();
    have.sort();
    out.push(check(
        "cgroup controllers",
        "resource limits",
        if missing.is_empty() {
            Status::Ok
        } else {
            Status::Warn
        },
        false,
        if missing.is_empty() {
            have.join(" ")
        } else {
            format!("{}; missing: {}", have.join(" "), missing.join(", "))
        },
        Some("mount the missing v1 hierarchies, or on cgroup v2 enable them in the parent's cgroup.subtree_control; limits of a missing controller are refused"),
    ));
    out
}

fn namespaces(need: &[String], rootless: bool) -> Vec<Check> {
    let all = [
        ("mnt", "mount"),
        ("pid", "pid"),
        ("net", "network"),
        ("ipc", "ipc"),
        ("uts", "uts"),
        ("user", "user"),
        ("cgroup", "cgroup"),
        ("time", "time"),
    ];
    let mut have = Vec::new();
    let mut missing_needed = Vec::new();
    let mut missing_other = Vec::new();
    for (proc, oci) in all {
        if Path::new(&format!("/proc/self/ns/{proc}")).exists() {
            have.push(proc);
        } else if need.iter().any(|n| n == oci) {
            missing_needed.push(proc);
        } else {
            missing_other.push(proc);
        }
    }
    let status = if !missing_needed.is_empty() {
        Status::Missing
    } else if !missing_other.is_empty() {
        Status::Warn
    } else {
        Status::Ok
    };
    let mut detail = have.join(" ");
    if !missing_needed.is_empty() || !missing_other.is_empty() {
        detail.push_str(&format!(
            "; missing: {}",
            [missing_needed, missing_other].concat().join(" ")
        ));
    }
    let mut out = vec![check(
        "namespaces",
        "isolation",
        status,
        true,
        detail,
        Some("use a kernel built with CONFIG_NAMESPACES and the missing CONFIG_*_NS options"),
    )];

    // User namespaces: the limit, and a real unshare as an unprivileged user.
    let max = read("/proc/sys/user/max_user_namespaces")
        .trim()
        .parse::<u64>()
        .unwrap_or(0);
    let unpriv = in_child(|| {
        // SAFETY: plain id changes and unshare in the forked probe child.
        unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setresgid(65534, 65534, 65534) == 0
                && libc::setresuid(65534, 65534, 65534) == 0
                && libc::unshare(libc::CLONE_NEWUSER) == 0
        }
    });
    // SAFETY: unshare in the forked probe child.
    let privileged = in_child(|| unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0);
    let (status, fix) = if max == 0 || !(privileged || unpriv) {
        (
            Status::Missing,
            "sysctl -w user.max_user_namespaces=15000 (and kernel.unprivileged_userns_clone=1 where it exists)",
        )
    } else if !unpriv {
        (
            Status::Warn,
            "sysctl -w kernel.unprivileged_userns_clone=1 (Debian), or kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu), for rootless containers",
        )
    } else {
        (Status::Ok, "")
    };
    out.push(check(
        "user namespaces",
        "rootless, uid maps",
        status,
        rootless,
        format!(
            "max_user_namespaces={max}; as root: {}; unprivileged: {}",
            if privileged { "allowed" } else { "refused" },
            if unpriv { "allowed" } else { "refused" }
        ),
        Some(fix),
    ));
    out
}

fn seccomp(cache: Option<&std::path::Path>) -> Check {
    let status_line = read("/proc/self/status")
        .lines()
        .find(|l| l.starts_with("Seccomp:"))
        .map(String::from);
    let actions = read("/proc/sys/kernel/seccomp/actions_avail");
    let lib = sandbox::linux::seccomp::library_version();
    let kernel_ok = status_line.is_some() && actions.contains("errno");
    check(
        "seccomp",
        "syscall filters",
        if kernel_ok { Status::Ok } else { Status::Missing },
        false,
        format!(
            "kernel actions: {}; libseccomp {lib}; compiled filters cached in {}",
            if actions.trim().is_empty() {
                "none".to_string()
            } else {
                actions.trim().to_string()
            },
            sandbox::linux::seccomp::cache::describe(cache)
        ),
        Some("use a kernel with CONFIG_SECCOMP_FILTER; configs with linux.seccomp are refused without it"),
    )
}

fn syscalls() -> Vec<Check> {
    let mut out = Vec::new();
    use sandbox::linux::syscall::{probe_clone3, probe_openat2, probe_pidfd};
    let probes: [(&str, &str, nix::Result<()>, &str, &str); 3] = [
        (
            "pidfd",
            "race-free wait and kill",
            probe_pidfd(),
            "pidfd_open(2) works",
            "use Linux 5.3 or later",
        ),
        (
            "clone3",
            "creating the container",
            probe_clone3(),
            "clone3(2) exists (CLONE_PIDFD, CLONE_INTO_CGROUP)",
            "use Linux 5.5 or later (or a seccomp profile that does not block clone3)",
        ),
        (
            "openat2",
            "mounts stay inside the rootfs",
            probe_openat2(),
            "openat2(2) with RESOLVE_IN_ROOT works",
            "use Linux 5.6 or later",
        ),
    ];
    for (name, role, r, ok, fix) in probes {
        out.push(check(
            name,
            role,
            if r.is_ok() {
                Status::Ok
            } else {
                Status::Missing
            },
            true,
            match r {
                Ok(()) => ok.to_string(),
                Err(e) => {
                    let call = if name == "pidfd" { "pidfd_open" } else { name };
                    format!("{call}(2): {e}")
                }
            },
            Some(fix),
        ));
    }
    // The runtime's own protection: which way protected_exe went.
    let (status, detail) = match sandbox::process::clone::protected_exe() {
        Ok(fd) => {
            use std::os::fd::AsRawFd;
            let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if link.starts_with("/memfd:") {
                (
                    Status::Warn,
                    "open_tree/mount_setattr refused: a sealed memfd copy of the binary is made per container".to_string(),
                )
            } else {
                (
                    Status::Ok,
                    "open_tree(OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_RDONLY): a read-only, detached mount of the binary".to_string(),
                )
            }
        }
        Err(e) => (Status::Missing, format!("neither way works: {e}")),
    };
    out.push(check(
        "runtime binary protection",
        "CVE-2019-5736",
        status,
        true,
        detail,
        Some("Linux 5.12 or later, run as root, gives the cheaper read-only mount"),
    ));
    out
}

fn overlayfs() -> Check {
    let fs = read("/proc/filesystems");
    let loaded = fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    let module = nix::sys::utsname::uname()
        .map(|u| {
            let dir = format!(
                "/lib/modules/{}/kernel/fs/overlayfs",
                u.release().to_string_lossy()
            );
            Path::new(&dir).exists()
        })
        .unwrap_or(false);
    check(
        "overlayfs",
        "image layers, VM rootfs",
        if loaded {
            Status::Ok
        } else if module {
            Status::Warn
        } else {
            Status::Missing
        },
        false,
        if loaded {
            "overlay is in /proc/filesystems"
        } else if module {
            "overlay is a module that is not loaded"
        } else {
            "no overlay filesystem"
        },
        Some("modprobe overlay"),
    )
}

fn lsm() -> Check {
    let aa = sandbox::linux::lsm::apparmor_enabled();
    let se = sandbox::linux::lsm::selinux_enabled();
    let list = read("/sys/kernel/security/lsm");
    let mut detail = match (aa, se) {
        (true, true) => "AppArmor and SELinux".to_string(),
        (true, false) => "AppArmor".to_string(),
        (false, true) => "SELinux".to_string(),
        (false, false) => {
            "neither AppArmor nor SELinux: configs asking for a profile or label are refused"
                .to_string()
        }
    };
    if !list.trim().is_empty() {
        detail.push_str(&format!(" (active LSMs: {})", list.trim()));
    }
    check(
        "LSM",
        "mandatory access control",
        Status::Info,
        false,
        detail,
        None,
    )
}

fn capabilities() -> Check {
    let last: u32 = read("/proc/sys/kernel/cap_last_cap")
        .trim()
        .parse()
        .unwrap_or(40);
    let bnd = read("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let all = if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    let missing = sandbox::linux::capabilities::names(all & !bnd);
    let has_admin = bnd & (1 << 21) != 0; // CAP_SYS_ADMIN
    check(
        "capabilities",
        "what a container may be given",
        if !has_admin {
            Status::Missing
        } else if missing.is_empty() {
            Status::Ok
        } else {
            Status::Warn
        },
        nix::unistd::geteuid().is_root(),
        if missing.is_empty() {
            "the bounding set has every capability".to_string()
        } else {
            format!(
                "not in this process's bounding set, so no container can have them: {}",
                missing.join(" ")
            )
        },
        Some("run nk-runtime from a less restricted context (the bounding set is inherited)"),
    )
}

fn rlimits() -> Check {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    check(
        "RLIMIT_NOFILE",
        "process.rlimits",
        Status::Info,
        false,
        format!(
            "soft {} hard {}: a config may not raise the hard limit above this without CAP_SYS_RESOURCE",
            rl.rlim_cur, rl.rlim_max
        ),
        None,
    )
}

/// Can CRIU checkpoint here? The binary checkpoint and restore would use,
/// its version over RPC, and `criu check`, CRIU's own probe of the kernel.
fn criu() -> Check {
    let (status, detail, fix) = match sandbox::criu::find(None) {
        Err(e) => (Status::Missing, e.to_string(), "apt-get install criu"),
        Ok(p) => {
            let v = sandbox::criu::version(&p)
                .map(|v| format!("CRIU {v}"))
                .unwrap_or_else(|e| format!("version unknown: {e}"));
            match sandbox::criu::host_check(&p) {
                Ok(()) => (
                    Status::Ok,
                    format!("{} ({v}): criu check passes", p.display()),
                    "",
                ),
                Err(lines) => (
                    Status::Missing,
                    format!(
                        "{} ({v}) cannot checkpoint on this kernel: {}",
                        p.display(),
                        lines.join("; ")
                    ),
                    "a CRIU release that supports this kernel (checkpoint and restore fail with CRIU's error until then); VM mode's guest kernel is one where it runs",
                ),
            }
        }
    };
    check(
        "criu",
        "checkpoint, restore",
        status,
        false,
        detail,
        Some(fix),
    )
}

fn vm_mode() -> Vec<Check> {
    let mut out = Vec::new();
    // The same lookups VM mode itself makes (crates/vm), so check cannot
    // disagree with what `create --mode vm` will find.
    let qemu = vm::qemu::find_qemu();
    let version = qemu.as_ref().ok().and_then(|q| {
        std::process::Command::new(q)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(String::from))
    });
    out.push(check(
        "qemu",
        "VM mode",
        if version.is_some() {
            Status::Ok
        } else {
            Status::Missing
        },
        false,
        match (&qemu, &version) {
            (Ok(q), Some(v)) => format!("{} ({v})", q.display()),
            (Ok(q), None) => format!("{} does not run", q.display()),
            (Err(e), _) => e.to_string(),
        },
        Some("apt-get install qemu-system-x86"),
    ));
    let (status, detail) = match vm::image::find_kernel() {
        Ok(k) => {
            let nine_p = k
                .modules_root
                .join(&k.version)
                .join("kernel/fs/9p")
                .exists();
            if nine_p {
                (
                    Status::Ok,
                    format!("{} with the 9p module", k.bzimage.display()),
                )
            } else {
                (
                    Status::Missing,
                    format!(
                        "{}: its modules lack 9p, needed to share the bundle",
                        k.bzimage.display()
                    ),
                )
            }
        }
        Err(e) => (Status::Missing, e.to_string()),
    };
    out.push(check(
        "guest kernel",
        "VM mode",
        status,
        false,
        detail,
        Some("apt-get install linux-image-amd64 (not linux-image-cloud-amd64, which lacks 9p)"),
    ));
    let (status, detail) = match vm::image::find_agent() {
        Ok(a) => {
            let data = std::fs::read(&a).unwrap_or_default();
            if vm::image::is_static_elf(&data) {
                (Status::Ok, format!("{} (static)", a.display()))
            } else {
                (
                    Status::Missing,
                    format!("{} is not a static executable", a.display()),
                )
            }
        }
        Err(e) => (Status::Missing, e.to_string()),
    };
    out.push(check(
        "guest agent",
        "VM mode",
        status,
        false,
        detail,
        Some("make agent (or make install, which installs it)"),
    ));
    out.push(vm_share());
    out.push(kvm());
    out.push(vm_criu());
    out
}

/// Can a VM-mode container be checkpointed: the host's criu (the kit is
/// assembled from it) and the guest kernel's modules CRIU needs. CRIU
/// itself runs on the guest kernel, not this one.
fn vm_criu() -> Check {
    let (status, detail) = match vm::image::find_kernel().and_then(|k| {
        vm::criu_kit::probe(&k.modules_root, &k.version).map(|c| (c, k.version))
    }) {
        Ok((c, kver)) => (
            Status::Ok,
            format!(
                "{} runs in the guest (kernel {kver}) from a kit assembled from it, with the guest's socket-diag and nf_tables modules",
                c.display()
            ),
        ),
        Err(e) => (Status::Missing, e.to_string()),
    };
    check(
        "criu in the guest",
        "VM checkpoint, restore",
        status,
        false,
        detail,
        Some("apt-get install criu"),
    )
}

/// Which filesystem carries the bundle into the guest, and why: the choice
/// `create --mode vm` makes for a cold boot of a config without the share
/// annotation (a VM started from a template always uses 9p).
fn vm_share() -> Check {
    let (status, detail) = match vm::backend::share_fs(&oci_spec::runtime::Spec::default()) {
        Ok(c) => (
            match c.fs {
                vm::virtiofs::ShareFs::VirtioFs { .. } => Status::Ok,
                vm::virtiofs::ShareFs::NineP => Status::Warn,
            },
            format!(
                "{}: {} (for cold boots; a VM started from a template carries its share over 9p)",
                vm::backend::share_name(&c.fs),
                c.why
            ),
        ),
        Err(e) => (Status::Warn, e.to_string()),
    };
    check(
        "vm share",
        "VM mode",
        status,
        false,
        detail,
        Some("9p works, slower; for virtio-fs: apt-get install qemu-system-x86 (virtiofsd) and linux-image-amd64 (the virtiofs module)"),
    )
}

/// Is KVM usable for a normal guest? /dev/kvm must open, speak API 12 and
/// create a VM, and the CPU must have hardware virtualisation (a software
/// kvm_pvm device cannot boot an unmodified guest kernel).
fn kvm() -> Check {
    let fix = Some("VM mode falls back to QEMU's TCG emulation (slower boots); for KVM, enable VT-x/AMD-V (or nested virtualisation) and load kvm_intel or kvm_amd");
    let cpu_virt = read("/proc/cpuinfo")
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    let dev = CString::new("/dev/kvm").unwrap_or_default();
    // SAFETY: open with a static path; the descriptor is closed below.
    let fd = unsafe { libc::open(dev.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return check(
            "KVM",
            "VM mode",
            Status::Warn,
            false,
            format!("/dev/kvm: {}; TCG will be used", errno()),
            fix,
        );
    }
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    // SAFETY: KVM ioctls on our descriptor that take no pointers.
    let api = unsafe { libc::ioctl(fd, KVM_GET_API_VERSION, 0) };
    // SAFETY: as above; a VM descriptor returned is closed at once.
    let vm = unsafe { libc::ioctl(fd, KVM_CREATE_VM, 0) };
    if vm >= 0 {
        // SAFETY: closing descriptors we own.
        unsafe { libc::close(vm) };
    }
    // SAFETY: closing the descriptor we opened.
    unsafe { libc::close(fd) };
    let usable = api == 12 && vm >= 0 && cpu_virt && !pvm;
    // VM mode's own answer, from a probe boot, once it has made one.
    let probed = vm::qemu::cached_accel(&vm::image::cache_dir())
        .map(|r| {
            format!(
                " (VM mode's probe boot chose {}: {})",
                r.accel.as_str(),
                summary(&r.reason, 100)
            )
        })
        .unwrap_or_default();
    let why = if api != 12 {
        format!("KVM API version {api}, not 12")
    } else if vm < 0 {
        "KVM_CREATE_VM failed".to_string()
    } else if pvm {
        "/dev/kvm is kvm_pvm, which cannot boot an unmodified guest kernel".to_string()
    } else if !cpu_virt {
        "the CPU has no vmx/svm flag".to_string()
    } else {
        String::new()
    };
    check(
        "KVM",
        "VM mode",
        if usable { Status::Ok } else { Status::Warn },
        false,
        if usable {
            format!("/dev/kvm works (API 12, KVM_CREATE_VM) on a CPU with hardware virtualisation{probed}")
        } else {
            format!("{why}; VM mode uses TCG{probed}")
        },
        fix,
    )
}

/// The gist of a long reason in at most about `max` characters: qemu's own
/// words in parentheses are dropped, then whole `; ` clauses are kept while
/// they fit, and a clause too long alone is cut after a whole word, with "…".
fn summary(reason: &str, max: usize) -> String {
    let s = reason.split(" (").next().unwrap_or("").trim();
    let mut out = String::new();
    for clause in s.split("; ") {
        if !out.is_empty() && out.chars().count() + 2 + clause.chars().count() > max {
            break;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(clause);
    }
    if out.chars().count() > max {
        let cut: String = out.chars().take(max).collect();
        out = match cut.rfind(' ') {
            Some(i) => cut[..i].trim_end_matches([',', ';', ':']).to_string(),
            None => cut,
        };
        out.push('…');
    }
    out
}

fn run_checks(rootless: bool, seccomp_cache: Option<&std::path::Path>) -> Vec<Check> {
    let spec = super::spec::default_spec(rootless, 0, 0);
    let need: Vec<String> = spec
        .pointer("/linux/namespaces")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|n| n["type"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let root = nix::unistd::geteuid().is_root();
    let mut out = vec![check(
        "privileges",
        "creating namespaces, cgroups",
        if root { Status::Ok } else { Status::Warn },
        false,
        if root {
            "running as root".to_string()
        } else {
            "not root: containers need a user namespace (nk-runtime spec --rootless) and a delegated cgroup for limits".to_string()
        },
        Some("run as root, or use nk-runtime spec --rootless"),
    )];
    out.extend(cgroups(rootless));
    out.extend(namespaces(&need, rootless));
    out.extend(syscalls());
    out.push(seccomp(seccomp_cache));
    out.push(capabilities());
    out.push(rlimits());
    out.push(overlayfs());
    out.push(lsm());
    out.push(criu());
    out.extend(vm_mode());
    out
}

fn table(kernel: &str, checks: &[Check], runs: bool) -> String {
    let mut s = format!("nk-runtime check: what this host supports (Linux {kernel})\n\n");
    s.push_str(&format!(
        "{:<7} {:<25} {:<5} {}\n",
        "status", "check", "need", "found"
    ));
    s.push_str(&format!(
        "{} {} {} {}\n",
        "-".repeat(7),
        "-".repeat(25),
        "-".repeat(5),
        "-".repeat(40)
    ));
    for c in checks {
        let head = format!(
            "{:<7} {:<25} {:<5} ",
            c.status.word(),
            c.name,
            if c.required { "yes" } else { "" }
        );
        let pad = " ".repeat(head.len());
        s.push_str(&sandbox::explain::render::wrap(&c.detail, 80, &head, &pad));
        if let Some(f) = &c.fix {
            s.push_str(&sandbox::explain::render::wrap(
                f,
                80,
                &format!("{pad}fix: "),
                &format!("{pad}     "),
            ));
        }
    }
    s.push('\n');
    if runs {
        s.push_str(
            "The default bundle (nk-runtime spec) can run here: every check it needs passed.\n",
        );
    } else {
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.required && c.status == Status::Missing)
            .map(|c| c.name)
            .collect();
        s.push_str(&format!(
            "The default bundle (nk-runtime spec) cannot run here: {} failed.\n",
            failed.join(", ")
        ));
    }
    s
}

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: CheckArgs) -> anyhow::Result<i32> {
    let kernel = kernel_release();
    let checks = run_checks(g.rootless, g.seccomp_cache.as_deref());
    let runs = !checks
        .iter()
        .any(|c| c.required && c.status == Status::Missing);
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "kernel": kernel,
                "checks": checks,
                "default_bundle_runs": runs,
            })
        );
    } else {
        print!("{}", table(&kernel, &checks, runs));
    }
    Ok(if runs { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn a_long_reason_is_cut_between_words() {
        let r = "a KVM probe boot failed: the agent did not send ready within 8 s; \
                 the guest console ends with: [    1.234] Run /init as init process \
                 (qemu: failed to set MSR 0x10a)";
        assert_eq!(
            summary(r, 100),
            "a KVM probe boot failed: the agent did not send ready within 8 s"
        );
        let one = "word ".repeat(40);
        let s = summary(&one, 30);
        assert!(s.ends_with("word…"), "{s}");
        assert!(s.chars().count() <= 31, "{s}");
        assert_eq!(summary("short (detail)", 100), "short");
    }
}
