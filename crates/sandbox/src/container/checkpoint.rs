//! checkpoint and restore in container mode: what the runtime asks CRIU
//! (crate::criu) to do, with runc's semantics.
//!
//! * checkpoint: CRIU freezes the container through its freezer cgroup,
//!   dumps the process tree into the image directory and (without
//!   --leave-running or --pre-dump) kills it; the runtime then deletes the
//!   container, as runc 1.1 does. The container's bind mounts, masked
//!   files and device nodes are named as external mounts, namespaces joined
//!   by path as external namespaces, and the init's stdio pipes are listed
//!   in `descriptors.json` so that restore can hand over new ones.
//! * restore: a new container from the bundle (state claimed, cgroup made
//!   with its limits), then CRIU rebuilds the tree on a bind mount of the
//!   rootfs, inside that cgroup, as a child of the runtime (rst_sibling).
//!   At CRIU's setup-namespaces notification the prestart and createRuntime
//!   hooks run; at post-restore the new init is recorded.

use super::create::{cgroup_mount_info, load_bundle, run_create_hooks, write_pid_file};
use super::{bad_status, Runtime};
use crate::cgroups::CgroupManager;
use crate::criu;
use crate::criu::rpc::{CgMode, Features, Opts, Req, ReqType};
use crate::criu::swrk::{Stdio3, Swrk};
use crate::error::{Error, IoContext, Result};
use crate::explain::{self, catalog, Phase};
use crate::linux::{self, namespaces};
use crate::spec;
use crate::state::{self, Mode, Phase as StPhase, Status};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The file in the image directory that lists the init's stdio (runc's name).
pub const DESCRIPTORS_FILE: &str = "descriptors.json";

/// The file in a VM-mode checkpoint's image directory that records the VM
/// (the vm crate writes and reads it; the command refuses a container-mode
/// restore of such an image, while the guest's agent restores its CRIU
/// images with this library).
pub const VM_IMAGE_RECORD: &str = "nk-vm.json";

/// Options both verbs share (the CRIU flags of runc's two commands).
#[derive(Debug, Clone, Default)]
pub struct CriuFlags {
    /// The criu binary (global --criu), else found on PATH.
    pub criu: Option<PathBuf>,
    pub image_path: PathBuf,
    /// Where CRIU writes its log (default: the image directory, as runc 1.1).
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<String>,
    pub empty_ns: Vec<String>,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
}

/// Options of `checkpoint`.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    pub flags: CriuFlags,
    /// --parent-path, relative to the image directory.
    pub parent_path: Option<String>,
    pub leave_running: bool,
    pub pre_dump: bool,
    /// --page-server ADDRESS:PORT.
    pub page_server: Option<String>,
}

/// Options of `restore`.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub flags: CriuFlags,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
}

/// A restored container, for a caller that waits for it.
#[derive(Debug)]
pub struct Restored {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// --manage-cgroups-mode, in runc's words.
fn cg_mode(f: &CriuFlags) -> Result<Option<CgMode>> {
    match f.manage_cgroups_mode.as_deref() {
        None | Some("") => Ok(None),
        Some(m) => CgMode::parse(m).map(Some).ok_or_else(|| {
            Error::msg(format!(
                "Invalid manage cgroups mode: {m:?} (use soft, full, strict or ignore)"
            ))
        }),
    }
}

/// --empty-ns as CRIU's mask. The network namespace is always in it:
/// like runc, the runtime does not configure network devices, so CRIU
/// neither dumps nor restores them (a hook or the engine sets them up).
fn empty_ns(f: &CriuFlags) -> Result<u32> {
    let mut mask = libc::CLONE_NEWNET as u32;
    for ns in &f.empty_ns {
        match ns.as_str() {
            "network" => mask |= libc::CLONE_NEWNET as u32,
            other => return Err(Error::msg(format!("namespace {other:?} is not supported"))),
        }
    }
    Ok(mask)
}

fn refuse_lazy_pages(f: &CriuFlags) -> Result<()> {
    if f.lazy_pages {
        return Err(Error::Unsupported(
            "--lazy-pages: nk-runtime does not run CRIU's lazy-pages daemon and page server that a lazy restore needs; checkpoint and restore without it".into(),
        ));
    }
    Ok(())
}

/// The image directory (made if missing) and the checked --parent-path,
/// with runc's texts, which engines print.
fn prepare_image_paths(o: &CheckpointOptions) -> Result<Option<String>> {
    let img = &o.flags.image_path;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(img)
        .io("mkdir", img)?;
    let Some(parent) = o.parent_path.as_deref().filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if Path::new(parent).is_absolute() {
        return Err(Error::msg("--parent-path must be relative"));
    }
    let real = img.join(parent);
    match std::fs::metadata(&real) {
        Ok(m) if m.is_dir() => Ok(Some(parent.to_string())),
        Ok(_) => Err(Error::msg(format!(
            "invalid --parent-path: stat {}: not a directory",
            real.display()
        ))),
        Err(e) => Err(Error::msg(format!(
            "invalid --parent-path: stat {}: {}",
            real.display(),
            go_errno_text(&e)
        ))),
    }
}

/// An io error as Go's syscall package words it (runc's messages).
fn go_errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "no such file or directory".into(),
        Some(libc::EACCES) => "permission denied".into(),
        Some(libc::ENOTDIR) => "not a directory".into(),
        _ => e.to_string(),
    }
}

/// The work directory (default: the image directory), made if missing.
fn work_dir(f: &CriuFlags) -> Result<PathBuf> {
    let w = f.work_path.clone().unwrap_or_else(|| f.image_path.clone());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&w)
        .io("mkdir", &w)?;
    Ok(w)
}

fn open_dir(p: &Path) -> Result<OwnedFd> {
    linux::fs::open_dir_path(p)
}

/// Every device node path of the container (runc names them all as
/// external mounts: they are bind mounts of the host's nodes in a user
/// namespace, and unused keys are ignored).
fn device_paths(spec: &Spec) -> Vec<String> {
    let mut v: Vec<String> = linux::devices::defaults()
        .into_iter()
        .map(|n| n.path.display().to_string())
        .collect();
    for d in spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default()
    {
        v.push(d.path().display().to_string());
    }
    v
}

/// The container's cgroup directories the runtime bound into it (a
/// `cgroup` mount without a new cgroup namespace): (mount point inside,
/// host directory). They are external mounts to CRIU: the image names
/// them by mount point and restore binds the new container's own cgroup
/// directories there. In a new cgroup namespace the mounts are real
/// cgroup mounts, which CRIU dumps and restores itself.
fn cgroup_binds(spec: &Spec, cg: Option<&dyn CgroupManager>) -> Vec<(String, String)> {
    let new_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup && n.path().is_none());
    if new_ns {
        return Vec::new();
    }
    let info = cgroup_mount_info(cg, false);
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            for h in linux::mounts::cgroup_hierarchies(m.destination(), &info) {
                out.push((
                    h.path.display().to_string(),
                    h.host_dir.display().to_string(),
                ));
            }
        }
    }
    out
}

/// Namespaces the config joins by path that CRIU must leave alone
/// (network and pid, as runc): CRIU's key for each and the path.
fn external_namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, &'static str, PathBuf)> {
    let mut out = Vec::new();
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        let key = match ns.typ() {
            LinuxNamespaceType::Network => "extRootNetNS",
            LinuxNamespaceType::Pid => "extRootPidNS",
            _ => continue,
        };
        if let Some(p) = ns.path() {
            out.push((ns.typ(), key, p.clone()));
        }
    }
    out
}

/// The options every request carries (runc's set).
fn base_opts(f: &CriuFlags, log: &str, mode: Option<CgMode>, empty_ns: u32) -> Opts {
    Opts {
        log_level: Some(4),
        log_file: Some(log.to_string()),
        manage_cgroups: true,
        manage_cgroups_mode: mode,
        notify_scripts: true,
        shell_job: f.shell_job,
        tcp_established: f.tcp_established,
        ext_unix_sk: f.ext_unix_sk,
        file_locks: f.file_locks,
        empty_ns,
        orphan_pts_master: true,
        auto_dedup: f.auto_dedup,
        ..Default::default()
    }
}

/// What the init's descriptors 0, 1 and 2 are now (`pipe:[123]`, a path).
fn stdio_links(pid: i32) -> Vec<String> {
    (0..3)
        .map(|n| {
            std::fs::read_link(format!("/proc/{pid}/fd/{n}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect()
}

impl Runtime {
    /// Checkpoint a running (or paused) container into the image directory.
    pub fn checkpoint(&self, id: &str, o: &CheckpointOptions) -> Result<()> {
        let (st, status) = self.load(id)?;
        if st.mode != Mode::Container {
            return Err(Error::Unsupported(format!(
                "checkpoint of the VM-mode container {id}: CRIU checkpoints host processes, and a VM's are in its guest (VM mode checkpoints through its VM monitor)"
            )));
        }
        if status != Status::Running && status != Status::Paused {
            return Err(bad_status(
                id,
                status,
                &format!("Container cannot be checkpointed in {status} state"),
            ));
        }
        if self.rootless {
            crate::logging::warn(|| {
                "checkpoint without root: CRIU needs CAP_SYS_ADMIN and CAP_CHECKPOINT_RESTORE over the container's namespaces".into()
            });
        }
        let parent = prepare_image_paths(o)?;
        let mode = cg_mode(&o.flags)?;
        let empty = empty_ns(&o.flags)?;
        refuse_lazy_pages(&o.flags)?;
        let page_server = match o.page_server.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(ps) => {
                let (addr, port) = ps
                    .rsplit_once(':')
                    .filter(|(a, p)| !a.is_empty() && !p.is_empty())
                    .ok_or_else(|| {
                        Error::msg("Use --page-server ADDRESS:PORT to specify page server")
                    })?;
                let port: i32 = port
                    .parse()
                    .map_err(|_| Error::msg("Invalid port number"))?;
                Some((addr.trim_matches(['[', ']']).to_string(), port))
            }
        };
        let criu = criu::find(o.flags.criu.as_deref())?;
        criu::check_version(&criu)?;
        if o.pre_dump {
            let want = Features {
                mem_track: Some(true),
                lazy_pages: None,
            };
            let got = criu::features(&criu, want)
                .map_err(|e| Error::msg(format!("CRIU feature check failed: {e}")))?;
            if got.mem_track != Some(true) {
                return Err(Error::Unsupported(
                    "CRIU feature check failed: memory tracking (MemTrack), which --pre-dump needs: the kernel lacks soft-dirty page tracking".into(),
                ));
            }
        }
        let dir = self.store.dir(id);
        let cfg_path = dir.join(state::CONFIG_FILE);
        let spec = spec::parse(&std::fs::read(&cfg_path).io("read", &cfg_path)?, &cfg_path)?.spec;
        let work = work_dir(&o.flags)?;
        let img_fd = open_dir(&o.flags.image_path)?;
        let work_fd = open_dir(&work)?;

        let mut sw = Swrk::new(&criu);
        let log = "dump.log";
        let mut opts = base_opts(&o.flags, log, mode, empty);
        opts.images_dir_fd = sw.pass(img_fd.as_fd())?;
        opts.work_dir_fd = Some(sw.pass(work_fd.as_fd())?);
        opts.pid = Some(st.pid);
        opts.root = Some(st.rootfs.display().to_string());
        opts.leave_running = o.leave_running;
        opts.page_server = page_server;
        if parent.is_some() {
            opts.parent_img = parent.clone();
            opts.track_mem = true;
        }
        if o.pre_dump {
            opts.track_mem = true;
        }
        // CRIU freezes the tree with the freezer cgroup (v1) or the
        // container's cgroup (v2), so no process escapes while it dumps.
        let cgroup = self.cgroup_of(&st);
        if let Some(cg) = &cgroup {
            let dirs = cg.dirs();
            opts.freeze_cgroup = dirs
                .iter()
                .find(|(c, _)| c == "freezer")
                .or_else(|| dirs.iter().find(|(c, _)| c.is_empty()))
                .map(|(_, d)| d.display().to_string());
        }
        for (_, key, path) in external_namespaces(&spec) {
            let ino = std::fs::metadata(&path)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .io("stat", &path)?;
            let kind = if key == "extRootNetNS" { "net" } else { "pid" };
            opts.external.push(format!("{kind}[{ino}]:{key}"));
        }
        if !o.pre_dump {
            for m in spec.mounts().iter().flatten().filter(|m| spec::is_bind(m)) {
                let d = m.destination().display().to_string();
                opts.ext_mnt.push((d.clone(), d));
            }
            for p in spec
                .linux()
                .as_ref()
                .and_then(|l| l.masked_paths().clone())
                .unwrap_or_default()
            {
                let inside = format!("/proc/{}/root{p}", st.pid);
                if std::fs::metadata(&inside).is_ok_and(|m| !m.is_dir()) {
                    opts.ext_mnt.push((p, "/dev/null".into()));
                }
            }
            for d in device_paths(&spec) {
                opts.ext_mnt.push((d.clone(), d));
            }
            for (inside, _) in cgroup_binds(&spec, cgroup.as_deref()) {
                opts.ext_mnt.push((inside.clone(), inside));
            }
            let fds = serde_json::to_vec(&stdio_links(st.pid)).unwrap_or_default();
            crate::files::replace(&o.flags.image_path.join(DESCRIPTORS_FILE), &fds, 0o600)?;
        }
        let typ = if o.pre_dump {
            ReqType::PreDump
        } else {
            ReqType::Dump
        };
        explain::step(&catalog::CRIU_DUMP, || {
            format!(
                "{} {} swrk: {} of pid {} into {}{}",
                criu.display(),
                typ.name(),
                if o.leave_running || o.pre_dump {
                    "leave running"
                } else {
                    "then kill"
                },
                st.pid,
                o.flags.image_path.display(),
                parent
                    .as_deref()
                    .map(|p| format!(" (parent {p})"))
                    .unwrap_or_default()
            )
        });
        let res = {
            let _g = explain::phase(Phase::Checkpoint);
            sw.run(
                Req::new(typ, Some(opts)),
                Stdio3::Null,
                Some(&work.join(log)),
                |_, _| Ok(()),
                |_, _| Ok(()),
            )
        };
        if let Err(e) = res {
            let (_, now) = self.load(id)?;
            return Err(Error::Msg(format!(
                "checkpoint of container {id} failed (the container is {now}): {e}"
            )));
        }
        if !(o.leave_running || o.pre_dump) {
            // CRIU killed the tree; the container goes, as with runc.
            self.delete(id, true)?;
        }
        Ok(())
    }

    /// Restore a container from an image directory, as a new container of
    /// the bundle. Returns the restored init, a child of this process.
    pub fn restore(&self, o: &RestoreOptions) -> Result<Restored> {
        let f = &o.flags;
        let mode = cg_mode(f)?;
        let empty = empty_ns(f)?;
        refuse_lazy_pages(f)?;
        let bundle = load_bundle(&o.id, &o.bundle)?;
        let terminal = bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        if terminal && o.console_socket.is_none() {
            return Err(Error::msg(
                "restore of a container with process.terminal needs --console-socket: the restored terminal's master is sent there",
            ));
        }
        let types = namespaces::types(bundle.spec.linux().as_ref());
        if !types.contains(&LinuxNamespaceType::Mount) {
            return Err(Error::config(
                &bundle.config_path,
                "linux.namespaces",
                "restore needs a mount namespace of the container's own: CRIU rebuilds its mounts on the bundle's rootfs",
            ));
        }
        let criu = criu::find(f.criu.as_deref())?;
        criu::check_version(&criu)?;
        let img_fd = open_dir(&f.image_path)?;
        let fds_path = f.image_path.join(DESCRIPTORS_FILE);
        let stdio: Vec<String> = serde_json::from_slice(
            &std::fs::read(&fds_path).io("read", &fds_path)?,
        )
        .map_err(|e| {
            Error::msg(format!(
                "{}: not a list of descriptors: {e}",
                fds_path.display()
            ))
        })?;
        let work = work_dir(f)?;
        let work_fd = open_dir(&work)?;

        let store = state::Store::open(&self.store.root)?;
        let mut record = self.base_record(&o.id, &bundle);
        let cgroup_mgr = self.cgroup_for(&bundle, &o.id)?;
        let (dir, _lock, mut cleanup) =
            self.claim_state(&store, &bundle, &mut record, cgroup_mgr, true, &|stale| {
                self.reap_stale(stale)
            })?;
        // CRIU wants the root to be a mount point whose parent is not
        // over-mounted: a bind mount of the rootfs in the state directory.
        let root = RootBind::new(&dir.join("criu-root"), &bundle.rootfs())?;

        let mut sw = Swrk::new(&criu);
        let log = "restore.log";
        let mut opts = base_opts(f, log, mode, empty);
        opts.images_dir_fd = sw.pass(img_fd.as_fd())?;
        opts.work_dir_fd = Some(sw.pass(work_fd.as_fd())?);
        opts.root = Some(root.path.display().to_string());
        opts.rst_sibling = true;
        opts.evasive_devices = true;
        opts.lsm_profile = o.lsm_profile.clone();
        opts.lsm_mount_context = o.lsm_mount_context.clone();
        let mut ns_files = Vec::new();
        for (_, key, path) in external_namespaces(&bundle.spec) {
            let fd = namespaces::open(&path)?;
            opts.inherit_fd
                .push((key.to_string(), sw.pass(fd.as_fd())?));
            ns_files.push(fd);
        }
        for m in bundle
            .spec
            .mounts()
            .iter()
            .flatten()
            .filter(|m| spec::is_bind(m))
        {
            let src = m.source().clone().unwrap_or_default();
            let src = if src.is_relative() {
                bundle.dir.join(src)
            } else {
                src
            };
            opts.ext_mnt.push((
                m.destination().display().to_string(),
                src.display().to_string(),
            ));
        }
        if bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.masked_paths().as_ref())
            .is_some_and(|m| !m.is_empty())
        {
            opts.ext_mnt.push(("/dev/null".into(), "/dev/null".into()));
        }
        for d in device_paths(&bundle.spec) {
            opts.ext_mnt.push((d.clone(), d));
        }
        for bind in cgroup_binds(&bundle.spec, cleanup.cgroup.as_deref()) {
            opts.ext_mnt.push(bind);
        }
        // The old stdio pipes become this process's own descriptors 0-2
        // (CRIU inherits them): what the caller of restore gave us.
        for (i, s) in stdio.iter().enumerate() {
            if s.contains("pipe:") {
                opts.inherit_fd.push((s.clone(), i as i32));
            }
        }

        explain::step(&catalog::CRIU_RESTORE, || {
            format!(
                "{} RESTORE swrk: images {}, root {}, into cgroup {}",
                criu.display(),
                f.image_path.display(),
                root.path.display(),
                cleanup
                    .cgroup
                    .as_ref()
                    .and_then(|c| c.dirs().first().map(|(_, d)| d.display().to_string()))
                    .unwrap_or_else(|| "(none)".into())
            )
        });
        let cg = cleanup.cgroup.as_deref();
        let console = o.console_socket.clone();
        let res = {
            let _g = explain::phase(Phase::Checkpoint);
            sw.run(
                Req::new(ReqType::Restore, Some(opts)),
                Stdio3::Inherit,
                Some(&work.join(log)),
                |pid, req| {
                    // CRIU restores the tree into the cgroup it is in: put
                    // it in the container's, and say that is the root.
                    if let Some(cg) = cg {
                        cg.add_process(pid as i32)?;
                    }
                    if let Some(o) = req.opts.as_mut() {
                        o.cg_root = cgroup_roots(pid as i32);
                    }
                    Ok(())
                },
                |n, fd| match n.script.as_str() {
                    "setup-namespaces" => {
                        let mut r = record.clone();
                        r.pid = n.pid;
                        let _g = explain::phase(Phase::Hooks);
                        run_create_hooks(&bundle, &o.id, &r)
                    }
                    "post-restore" => {
                        record.pid = n.pid;
                        record.pid_start = state::proc_stat(n.pid).map(|s| s.start).unwrap_or(0);
                        record.save(&dir)
                    }
                    "orphan-pts-master" => {
                        let (Some(path), Some(master)) = (&console, fd) else {
                            return Ok(());
                        };
                        let sock = linux::console::connect(path)?;
                        linux::console::send_fd(sock.as_fd(), master.as_fd(), "/dev/ptmx")
                    }
                    _ => Ok(()),
                },
            )
        };
        drop(root);
        drop(ns_files);
        let resp =
            res.map_err(|e| Error::Msg(format!("restore of container {} failed: {e}", o.id)))?;
        let pid = resp.restored_pid.unwrap_or(record.pid);
        let pidfd = linux::hooks::pidfd_open(pid)
            .map_err(|e| Error::msg(format!("restored init {pid}: pidfd_open: {e}")))?;
        cleanup.child = Some((pid, pidfd));
        record.pid = pid;
        record.pid_start = state::proc_stat(pid).map(|s| s.start).unwrap_or(0);
        record.namespaces = Some(namespaces::record(pid, &types)?);
        record.phase = Some(StPhase::Created);
        explain::step(&catalog::STATE_CREATED, || {
            format!(
                "pid {pid}, start time {} (clock ticks after boot)",
                record.pid_start
            )
        });
        record.save(&dir)?;
        if let Some(pf) = &o.pid_file {
            write_pid_file(pf, pid)?;
        }
        cleanup.armed = false;
        let (pid, pidfd) = cleanup.child.take().expect("set above");
        Ok(Restored { pid, pidfd })
    }
}

/// Where CRIU puts each hierarchy's tree: the cgroups `pid` (CRIU, moved
/// into the container's cgroup) is in, from /proc/<pid>/cgroup. The
/// unified hierarchy alone (cgroup v2) is the root for every controller.
fn cgroup_roots(pid: i32) -> Vec<(Option<String>, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut v1 = Vec::new();
    let mut v2 = None;
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrl.is_empty() {
            v2 = Some(path.to_string());
        } else {
            v1.push((Some(ctrl.to_string()), path.to_string()));
        }
    }
    match (v1.is_empty(), v2) {
        (true, Some(p)) => vec![(None, p)],
        _ => v1,
    }
}

/// A recursive bind mount of the rootfs, detached on drop.
struct RootBind {
    path: PathBuf,
}

impl RootBind {
    fn new(path: &Path, rootfs: &Path) -> Result<RootBind> {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(path)
            .io("mkdir", path)?;
        nix::mount::mount(
            Some(rootfs),
            path,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| {
            let _ = std::fs::remove_dir(path);
            Error::sys(
                format!("bind {} on {}", rootfs.display(), path.display()),
                e,
            )
        })?;
        Ok(RootBind {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for RootBind {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(img: &Path, parent: Option<&str>) -> CheckpointOptions {
        CheckpointOptions {
            flags: CriuFlags {
                image_path: img.to_path_buf(),
                ..Default::default()
            },
            parent_path: parent.map(String::from),
            ..Default::default()
        }
    }

    /// runc 1.1.5's texts, which engines print to their users.
    #[test]
    fn parent_path_errors_are_runcs() {
        let d = std::env::temp_dir().join(format!("nk-ckpt-{}", std::process::id()));
        let img = d.join("img");
        let e = prepare_image_paths(&opts(&img, Some("/abs"))).unwrap_err();
        assert_eq!(e.to_string(), "--parent-path must be relative");
        let e = prepare_image_paths(&opts(&img, Some("nope"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "invalid --parent-path: stat {}/nope: no such file or directory",
                img.display()
            )
        );
        std::fs::write(img.join("file"), "").unwrap();
        let e = prepare_image_paths(&opts(&img, Some("file"))).unwrap_err();
        assert!(e.to_string().ends_with("file: not a directory"), "{e}");
        std::fs::create_dir(img.join("pre")).unwrap();
        assert_eq!(
            prepare_image_paths(&opts(&img, Some("pre"))).unwrap(),
            Some("pre".to_string())
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn flags_are_checked_with_runcs_words() {
        let mut f = CriuFlags::default();
        assert_eq!(empty_ns(&f).unwrap(), libc::CLONE_NEWNET as u32);
        f.empty_ns = vec!["network".into()];
        assert_eq!(empty_ns(&f).unwrap(), libc::CLONE_NEWNET as u32);
        f.empty_ns = vec!["bogus".into()];
        assert_eq!(
            empty_ns(&f).unwrap_err().to_string(),
            "namespace \"bogus\" is not supported"
        );
        f.manage_cgroups_mode = Some("full".into());
        assert_eq!(cg_mode(&f).unwrap(), Some(CgMode::Full));
        f.manage_cgroups_mode = Some("x".into());
        assert!(cg_mode(&f)
            .unwrap_err()
            .to_string()
            .starts_with("Invalid manage cgroups mode"));
    }

    #[test]
    fn cgroup_roots_follow_the_hierarchies() {
        let own = cgroup_roots(std::process::id() as i32);
        assert!(!own.is_empty());
    }
}
