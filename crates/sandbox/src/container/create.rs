//! create: everything up to the exec barrier. On any failure the container's
//! process is killed and its cgroup and state directory are removed, so the
//! same id can be created again at once.

use super::launch::{Launch, Listen, Request, Setup};
use super::undo::ClaimedDir;
use super::Runtime;
use crate::cgroups::{self, CgroupManager, PathSpec};
use crate::error::{Error, Result};
use crate::explain::{self, catalog, Phase};
use crate::linux::{self, mounts::CgroupMountInfo, namespaces};
use crate::process::clone;
use crate::process::messages::{
    InitKind, InitRequest, FD_CGROUP_TASKS, FD_CONFIG, FD_EXEC_FIFO, FD_IDMAP_PREFIX, FD_PIDNS,
};
use crate::spec::{self, Bundle, ValidateOpts};
use crate::state::{self, ContainerState, Phase as StPhase};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxNamespaceType, LinuxResources};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Options of `create` (and the create half of `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// `run` in the foreground: a terminal may be bridged by us.
    pub foreground: bool,
    /// `run`: this process starts the container right after create, so
    /// the init waits on the sync channel, not on an exec.fifo that another
    /// `start` would open (one file less to make, open and remove).
    pub start_now: bool,
}

/// A created container, for callers that stay (run).
#[derive(Debug)]
pub struct Handle {
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// The pty master when the terminal is bridged by us.
    pub pty: Option<OwnedFd>,
    /// The record as saved, created (for `run`'s start).
    pub record: ContainerState,
    /// The config's poststart hooks (for `run`'s start).
    pub poststart: Option<Vec<oci_spec::runtime::Hook>>,
    /// With [`CreateOptions::start_now`]: the launch whose channel the
    /// init waits on for its start.
    pub(super) barrier: Option<Launch>,
    /// With [`CreateOptions::start_now`]: the file of the created record,
    /// written while the released init execs (the record on disk says
    /// creating until then).
    pub(super) unsaved: Option<crate::files::Pending>,
}

/// The device cgroup rules: the config's, then runc's default allow list and
/// an allow rule per linux.devices entry (runc appends the same).
pub fn device_rules(b: &Bundle) -> Vec<LinuxDeviceCgroup> {
    let linux = b.spec.linux().clone().unwrap_or_default();
    let mut rules: Vec<LinuxDeviceCgroup> = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let rule = |t: &str, maj: Option<i64>, min: Option<i64>, acc: &str| -> LinuxDeviceCgroup {
        let mut j = serde_json::json!({"allow": true, "type": t, "access": acc});
        if let Some(m) = maj {
            j["major"] = m.into();
        }
        if let Some(m) = min {
            j["minor"] = m.into();
        }
        serde_json::from_value(j).expect("static device rule")
    };
    if rules.is_empty() {
        return rules;
    }
    for (t, maj, min, acc) in [
        ("c", None, None, "m"),
        ("b", None, None, "m"),
        ("c", Some(1), Some(3), "rwm"),
        ("c", Some(1), Some(8), "rwm"),
        ("c", Some(1), Some(7), "rwm"),
        ("c", Some(5), Some(0), "rwm"),
        ("c", Some(1), Some(5), "rwm"),
        ("c", Some(1), Some(9), "rwm"),
        ("c", Some(5), Some(1), "rwm"),
        ("c", Some(136), None, "rwm"),
        ("c", Some(5), Some(2), "rwm"),
        ("c", Some(10), Some(200), "rwm"),
    ] {
        rules.push(rule(t, maj, min, acc));
    }
    for d in linux.devices().iter().flatten() {
        let t = match serde_json::to_value(d.typ())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
        {
            Some(t) if t == "b" => "b",
            _ => "c",
        };
        rules.push(rule(t, Some(d.major()), Some(d.minor()), "rwm"));
    }
    rules
}

struct Plan {
    clone_flags: CloneFlags,
    join: Vec<(String, PathBuf)>,
    pid_path: Option<PathBuf>,
    /// An existing user namespace to join (through an intermediate process).
    userns_path: Option<PathBuf>,
    new_userns: bool,
    userns: bool,
    new_mountns: bool,
    /// No mount namespace in linux.namespaces: the runtime's is used.
    host_mountns: bool,
    new_cgroupns: bool,
    new_timens: bool,
}

fn plan(b: &Bundle) -> Result<Plan> {
    let mut p = Plan {
        clone_flags: CloneFlags::empty(),
        join: Vec::new(),
        pid_path: None,
        userns_path: None,
        new_userns: false,
        userns: false,
        new_mountns: false,
        host_mountns: false,
        new_cgroupns: false,
        new_timens: false,
    };
    let nss = b
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let mut joined = std::collections::HashMap::new();
    for ns in &nss {
        let t = ns.typ();
        match ns.path() {
            Some(path) => {
                joined.insert(t as u64, path.clone());
                match t {
                    LinuxNamespaceType::Pid => p.pid_path = Some(path.clone()),
                    LinuxNamespaceType::User => {
                        check_joined_maps(b, path)?;
                        p.userns_path = Some(path.clone());
                    }
                    _ => {}
                }
            }
            None => match t {
                LinuxNamespaceType::Cgroup => p.new_cgroupns = true,
                LinuxNamespaceType::Time => p.new_timens = true,
                LinuxNamespaceType::User => {
                    p.new_userns = true;
                    p.clone_flags |= CloneFlags::CLONE_NEWUSER;
                }
                LinuxNamespaceType::Mount => {
                    p.new_mountns = true;
                    p.clone_flags |= CloneFlags::CLONE_NEWNS;
                }
                other => p.clone_flags |= namespaces::clone_flag(other),
            },
        }
    }
    p.userns = p.new_userns || p.userns_path.is_some();
    for t in namespaces::JOIN_ORDER {
        // pid is entered by the parent, user by the intermediate process.
        if t == LinuxNamespaceType::Pid || t == LinuxNamespaceType::User {
            continue;
        }
        if let Some(path) = joined.get(&(t as u64)) {
            p.join.push((namespaces::name(t).to_string(), path.clone()));
        }
    }
    // What such a container may not ask for is refused by spec::validate.
    p.host_mountns = !p.new_mountns && !joined.contains_key(&(LinuxNamespaceType::Mount as u64));
    Ok(p)
}

/// With a joined user namespace, uidMappings and gidMappings are optional;
/// when given they must be the namespace's own (read from /proc when the
/// path is a /proc/<pid>/ns/user file), as runc checks.
fn check_joined_maps(b: &Bundle, path: &Path) -> Result<()> {
    let linux = b.spec.linux().clone().unwrap_or_default();
    let Some(pid_dir) = path
        .to_str()
        .and_then(|s| s.strip_suffix("/ns/user"))
        .filter(|d| d.starts_with("/proc/"))
    else {
        return Ok(());
    };
    for (field, file, maps) in [
        ("linux.uidMappings", "uid_map", linux.uid_mappings()),
        ("linux.gidMappings", "gid_map", linux.gid_mappings()),
    ] {
        let Some(maps) = maps.as_ref().filter(|m| !m.is_empty()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("{pid_dir}/{file}")) else {
            continue;
        };
        let theirs: Vec<Vec<u64>> = text
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect()
            })
            .collect();
        let ours: Vec<Vec<u64>> = maps
            .iter()
            .map(|m| vec![m.container_id() as u64, m.host_id() as u64, m.size() as u64])
            .collect();
        if theirs != ours {
            return Err(Error::config(
                &b.config_path,
                field,
                format!(
                    "the user namespace joined at {} has other mappings ({}); remove the field or make it match",
                    path.display(),
                    text.trim().replace('\n', ", ")
                ),
            ));
        }
    }
    Ok(())
}

impl Runtime {
    /// Create a container: the init is set up and parked at the exec
    /// barrier. The phases, in order: check the bundle, plan the
    /// namespaces, claim the state directory, make the cgroup and the exec
    /// FIFO, launch the init, answer its hooks, record it as created.
    pub fn create(&self, o: &CreateOptions) -> Result<Handle> {
        let bundle = load_bundle(&o.id, &o.bundle)?;
        let process = bundle.spec.process().clone().expect("validated");
        let terminal = process.terminal() == Some(true);
        check_terminal(o, terminal)?;
        let plan = plan(&bundle)?;
        if self.rootless {
            refuse_rootless_idmaps(&bundle)?;
        }
        let seccomp = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone());
        let mut record = self.new_record(o, &bundle, &plan);
        let cgroup_mgr = self.cgroup_for(&bundle, &o.id)?;
        // On a pure v1 host the cgroup is made after the clone, while the
        // child execs the runtime copy (the slowest step of its start, on
        // another CPU), and the init moves itself in first thing: writing
        // 0 to a tasks file takes no global lock, where the parent moving it
        // would wait for an RCU grace period. A cgroup2 directory must be
        // there before the clone (CLONE_INTO_CGROUP), and in a user
        // namespace the parent moves the child: those keep the order.
        let join_files = match &cgroup_mgr {
            Some(c) if !plan.userns && !c.joins_at_clone() => c.self_join_files(),
            _ => Vec::new(),
        };
        let defer = !join_files.is_empty();
        // Declared before the launch, so dropped after it: a failed create
        // kills the child before its cgroup and state go.
        let mut claimed: Option<ClaimedDir<'_>> = None;
        let mut filter = None;
        let mut cgroup_mgr = Some(cgroup_mgr);
        let mut claim = |record: &mut ContainerState| -> Result<ClaimedDir<'_>> {
            let store = crate::state::Store::open(&self.store.root)?;
            let cg = cgroup_mgr.take().flatten();
            if defer {
                return self
                    .claim_dir(&store, &bundle, record, cg, &|stale| self.reap_stale(stale));
            }
            let (d, l, c) = self.claim_state(&store, &bundle, record, cg, true, &|stale| {
                self.reap_stale(stale)
            })?;
            Ok((d, l, c, None))
        };
        if !defer {
            filter = self.seccomp_filter(seccomp.as_ref())?;
            claimed = Some(claim(&mut record)?);
        }
        let mut launch = Launch::prepare(&Setup {
            console_socket: o.console_socket.as_deref(),
            seccomp: seccomp.as_ref(),
            cgroup: claimed.as_ref().and_then(|c| c.2.cgroup.as_deref()),
            own_userns: plan.userns,
            wait_for_maps: plan.new_userns,
            preserve_fds: o.preserve_fds,
        })?;
        let (pid, handover) = spawn_init(&mut launch, &plan)?;
        let stat = state::proc_stat(pid);
        record.pid = pid;
        record.pid_start = stat.as_ref().map_or(0, |s| s.start);
        // Let the child start on its CPU while we claim the state and make
        // the cgroup, when those come after the clone (see
        // linux::procattr::leave_cpu).
        let cpu_left = linux::procattr::leave_cpu(stat.and_then(|s| s.cpu), defer);
        // With the cgroup made after the clone, so is the claim of the
        // state directory and the seccomp filter: the parent does them
        // while the child execs, and the record is claimed with the pid.
        // Until the claim, nothing outside the child exists; if it fails
        // (the id is taken), dropping the launch kills the child.
        if defer {
            claimed = Some(claim(&mut record)?);
            filter = self.seccomp_filter(seccomp.as_ref())?;
        }
        let Some((dir, _lock, cleanup, later)) = claimed.as_mut() else {
            return Err(Error::msg("create: the state directory was not claimed"));
        };
        let dir = dir.clone();
        cleanup.host_mounts = record
            .host_mounts
            .clone()
            .map(|hm| (record.rootfs.clone(), hm));
        let fifo = if o.start_now {
            None
        } else {
            Some(make_fifo(&dir)?)
        };
        // The pid is saved before the init is ready only where someone can
        // need it: a create-time hook may ask `state`, and without a cgroup
        // a create killed from here on would leave no other trace of the
        // init (with one, delete kills what the cgroup holds). Elsewhere the
        // save would cost a replacing rename, whose flush of the file the
        // next replace waits for. A record claimed after the clone has it.
        if !defer && (create_hooks(&bundle) || cleanup.cgroup.is_none()) {
            record.save(&dir)?;
        }
        let (join_cgroup, tasks) = match later.take() {
            Some(cg) => {
                let _g = explain::phase(Phase::Cgroups);
                self.make_cgroup(cleanup, cg, &mut record, &dir, &bundle, true)?;
                explain::cgroup_join_after_exec(join_files.len());
                let tasks = open_tasks(&join_files)?;
                (join_files, tasks)
            }
            None => {
                if let Some(cg) = &cleanup.cgroup {
                    let _g = explain::phase(Phase::Cgroups);
                    launch.enter_cgroup(Some(cg.as_ref()))?;
                }
                (Vec::new(), Vec::new())
            }
        };
        // Back before anything we run could inherit the narrowed mask:
        // newuidmap, then the hooks.
        drop(cpu_left);
        if plan.new_userns {
            write_id_maps(&mut launch, &bundle, pid)?;
        }
        let idmapped = self.idmapped_trees(&bundle, pid, plan.userns)?;

        let (console_fd, seccomp_listener_fd) = launch.passed();
        let req = InitRequest {
            kind: InitKind::Create,
            id: o.id.clone(),
            state_dir: dir.clone(),
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs(),
            process: process.clone(),
            seccomp: filter,
            join: plan.join.clone(),
            new_timens: plan.new_timens,
            new_cgroupns: plan.new_cgroupns,
            host_mountns: plan.host_mountns,
            userns: plan.userns,
            no_pivot: o.no_pivot,
            no_new_keyring: o.no_new_keyring,
            personality: bundle
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.personality().clone()),
            memory_policy: bundle
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.memory_policy().clone()),
            preserve_fds: o.preserve_fds,
            console_fd,
            seccomp_listener_fd,
            tty_to_parent: terminal && o.console_socket.is_none(),
            cgroup_mount: cgroup_mount_info(cleanup.cgroup.as_deref(), plan.new_cgroupns),
            pid_handover: handover.is_some(),
            release_on_channel: o.start_now,
            join_cgroup,
            host_pid: pid,
            init_pid: pid,
            annotations: record.annotations.clone(),
            fd_names: fifo
                .iter()
                .map(|_| FD_EXEC_FIFO.to_string())
                .chain([FD_CONFIG.to_string()])
                .chain(
                    idmapped
                        .iter()
                        .map(|(i, _)| format!("{FD_IDMAP_PREFIX}{i}")),
                )
                .chain(handover.as_ref().map(|_| FD_PIDNS.to_string()))
                .chain(tasks.iter().map(|_| FD_CGROUP_TASKS.to_string()))
                .collect(),
            explain: self.explain,
            trace: self.trace,
            log_level: self.log_level,
        };
        let cfg_copy = dir.join(state::CONFIG_FILE);
        send_init(
            &mut launch,
            req,
            fifo.as_deref(),
            &cfg_copy,
            idmapped,
            handover,
            tasks,
        )?;
        // While the child sets itself up: the file of the created record.
        let created_file = ContainerState::reserve(&dir)?;

        let pty = launch.listen(Listen {
            what: "the container's init",
            through_exec: false,
            answer: Some(&mut |r| match r {
                Request::Hooks => {
                    if let Some(l) = bundle.spec.linux() {
                        let netns = PathBuf::from(format!("/proc/{}/ns/net", record.pid));
                        linux::netdevices::move_all(l, &netns, &bundle.config_path)?;
                    }
                    run_create_hooks(&bundle, &o.id, &record)
                }
                Request::Reborn(new) => {
                    record.pid = new;
                    record.pid_start = state::proc_stat(new).map(|s| s.start).unwrap_or(0);
                    record.save(&dir)
                }
            }),
        })?;
        let pid = record.pid;
        mark_created(&bundle, &mut record)?;
        // `run` releases the init first and saves while it execs (see
        // Runtime::start_created); `create` returns with the record saved.
        let unsaved = if o.start_now {
            Some(created_file)
        } else {
            record.save_into(created_file)?;
            None
        };
        if let Some(pf) = &o.pid_file {
            write_pid_file(pf, pid)?;
        }
        cleanup.armed = false;
        let (pid, pidfd) = launch.finish()?;
        Ok(Handle {
            pid,
            pidfd,
            pty,
            barrier: o.start_now.then_some(launch),
            unsaved,
            poststart: bundle
                .spec
                .hooks()
                .as_ref()
                .and_then(|h| h.poststart().clone()),
            record,
        })
    }

    /// The record of a container about to be claimed.
    fn new_record(&self, o: &CreateOptions, bundle: &Bundle, plan: &Plan) -> ContainerState {
        ContainerState {
            no_new_keyring: o.no_new_keyring,
            host_mounts: plan.host_mountns.then(|| linux::hostmounts::HostMounts {
                before: linux::hostmounts::snapshot(&bundle.rootfs()),
                created: None,
            }),
            ..self.base_record(&o.id, bundle)
        }
    }

    /// What every new container's record starts with (create and restore):
    /// who made it, from which bundle, in the Creating phase.
    pub(super) fn base_record(&self, id: &str, bundle: &Bundle) -> ContainerState {
        let me = std::process::id() as i32;
        ContainerState {
            private_pidns: Some(private_pidns(&bundle.spec)),
            id: id.to_string(),
            creator_pid: me,
            creator_start: state::proc_stat(me).map(|s| s.start).unwrap_or(0),
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs(),
            created: crate::time::now_rfc3339_nanos(),
            annotations: bundle.annotations().into_iter().collect(),
            phase: Some(StPhase::Creating),
            rootless: self.rootless,
            owner_uid: nix::unistd::geteuid().as_raw(),
            ..Default::default()
        }
    }

    /// linux.resources, with the device rules, on the new cgroup.
    pub(super) fn apply_resources(&self, cg: &dyn CgroupManager, bundle: &Bundle) -> Result<()> {
        let mut res: LinuxResources = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        if !self.rootless {
            res.set_devices(Some(device_rules(bundle)));
        }
        cg.set(&res, false)
    }

    /// The detached, idmapped trees of the bundle's idmapped mounts, made here
    /// in the host's namespaces (mount_setattr needs privilege over the
    /// source's filesystem) and moved into place by the init. A mount with its
    /// own mappings gets a user namespace of those; one without uses the
    /// container's (that of `pid`).
    fn idmapped_trees(&self, b: &Bundle, pid: i32, userns: bool) -> Result<Vec<(usize, OwnedFd)>> {
        let mut trees = Vec::new();
        let mut own_ns: Option<OwnedFd> = None;
        let mut made: Vec<(linux::mounts::IdmapPlan, OwnedFd)> = Vec::new();
        for (i, m) in b.spec.mounts().iter().flatten().enumerate() {
            let Some(plan) = linux::mounts::idmap_plan(m) else {
                continue;
            };
            if trees.len() >= crate::process::sync::MAX_IDMAPPED {
                return Err(Error::config(
                    &b.config_path,
                    "mounts",
                    format!(
                        "more than {} idmapped mounts",
                        crate::process::sync::MAX_IDMAPPED
                    ),
                ));
            }
            let src = m.source().clone().unwrap_or_default();
            let ns = match &plan.maps {
                Some((u, g)) => {
                    if !made.iter().any(|(p, _)| p.maps == plan.maps) {
                        made.push((plan.clone(), crate::process::userns::with_maps(u, g)?));
                    }
                    made.iter()
                        .find(|(p, _)| p.maps == plan.maps)
                        .map(|(_, fd)| fd.as_fd())
                }
                None if userns => {
                    if own_ns.is_none() {
                        let p = format!("/proc/{pid}/ns/user");
                        own_ns = Some(
                            nix::fcntl::open(
                                p.as_str(),
                                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                                nix::sys::stat::Mode::empty(),
                            )
                            .map_err(|e| Error::sys(format!("open {p}"), e))?,
                        );
                    }
                    own_ns.as_ref().map(|f| f.as_fd())
                }
                None => None,
            };
            let Some(ns) = ns else {
                return Err(Error::config(
                    &b.config_path,
                    format!("mounts[{i}]"),
                    "idmap without uidMappings/gidMappings on the mount uses the container's user namespace, and there is none: add {\"type\": \"user\"} to linux.namespaces or give the mount its own mappings",
                ));
            };
            trees.push((i, linux::mounts::idmapped_tree(i, &src, &plan, ns)?));
        }
        Ok(trees)
    }

    /// The cgroup manager for a new container (None rootless without a
    /// delegated cgroup); both backends' create ask it.
    pub fn cgroup_for(&self, b: &Bundle, id: &str) -> Result<Option<Box<dyn CgroupManager>>> {
        let ps = PathSpec {
            cgroups_path: b
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().clone()),
            systemd: self.systemd_cgroup,
        };
        if self.rootless {
            // Without root, a cgroup is only usable when delegated to us (its
            // directories, or their nearest existing parents, are ours to
            // write). Like runc, skip it otherwise, unless the config asks for
            // limits: those would silently not be enforced, so that is an error.
            let limits = b
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref())
                .and_then(|r| serde_json::to_value(r).ok())
                .and_then(|v| v.as_object().cloned())
                .map(|mut o| {
                    o.remove("devices");
                    o.retain(|_, v| !v.is_null());
                    o.keys().cloned().collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let m = cgroups::new_manager(&ps, id, &cgroups::Options::default())?;
            match m.dirs().iter().find_map(|(_, d)| not_delegated(d)) {
                None => return Ok(Some(m)),
                Some(why) if !limits.is_empty() => {
                    return Err(Error::config(
                        &b.config_path,
                        format!("linux.resources.{}", limits[0]),
                        format!(
                            "limits need a cgroup, and without root only a delegated one can be used ({why}); remove linux.resources or point linux.cgroupsPath at a cgroup this user owns"
                        ),
                    ));
                }
                Some(why) => {
                    crate::logging::info(|| format!("rootless: no cgroup ({why})"));
                    return Ok(None);
                }
            }
        }
        cgroups::new_manager(&ps, id, &cgroups::Options::default()).map(Some)
    }

    /// Clean up after a create that was killed: its init, host mounts and
    /// cgroup (a backend kills what else it started first).
    pub fn reap_stale(&self, st: &ContainerState) {
        if st.init_alive() {
            // SAFETY: kill(2) the init recorded by a create that died.
            unsafe { libc::kill(st.pid, libc::SIGKILL) };
        }
        if let Some(hm) = &st.host_mounts {
            linux::hostmounts::cleanup(&st.rootfs, hm);
        }
        if let Some(cg) = crate::cgroups::from_record(&st.cgroup) {
            let _ = cg.destroy(true);
        }
    }
}

/// Why this user cannot use the cgroup directory `dir`, if it cannot: the
/// directory's cgroup.procs, or (when it does not exist yet) its nearest
/// existing parent, must be writable. Nothing is created here.
fn not_delegated(dir: &Path) -> Option<String> {
    use nix::unistd::{access, AccessFlags};
    if dir.exists() {
        let procs = dir.join("cgroup.procs");
        return access(&procs, AccessFlags::W_OK)
            .err()
            .map(|e| format!("{}: {e}", procs.display()));
    }
    let mut a = dir.parent();
    while let Some(p) = a {
        if p.exists() {
            return access(p, AccessFlags::W_OK | AccessFlags::X_OK)
                .err()
                .map(|e| format!("cannot create {}: {}: {e}", dir.display(), p.display()));
        }
        a = p.parent();
    }
    Some(format!("{}: no such hierarchy", dir.display()))
}

/// Phase "spec": read config.json and check it before anything exists.
/// Create and restore both start here.
pub(super) fn load_bundle(id: &str, bundle: &Path) -> Result<Bundle> {
    let _g = explain::phase(Phase::Spec);
    state::validate_id(id)?;
    let b = spec::load(bundle)?;
    explain::step(&catalog::SPEC_LOAD, || {
        format!("{} ({} bytes)", b.config_path.display(), b.raw.len())
    });
    spec::validate(
        &b,
        ValidateOpts {
            need_process: true,
            check_rootfs: true,
        },
    )?;
    Ok(b)
}

/// A terminal needs somewhere to go, and a console socket a terminal.
fn check_terminal(o: &CreateOptions, terminal: bool) -> Result<()> {
    if terminal && o.console_socket.is_none() && !o.foreground {
        return Err(Error::msg(
            "cannot allocate tty if runc will detach without setting console socket: give --console-socket, or set process.terminal to false",
        ));
    }
    if !terminal && o.console_socket.is_some() {
        return Err(Error::msg(
            "cannot use console socket if runc will not detach or allocate tty: process.terminal is false",
        ));
    }
    Ok(())
}

/// Idmapped mounts need CAP_SYS_ADMIN in the host's user namespace.
fn refuse_rootless_idmaps(bundle: &Bundle) -> Result<()> {
    for (i, m) in bundle.spec.mounts().iter().flatten().enumerate() {
        if linux::mounts::idmap_plan(m).is_some() {
            return Err(Error::config(
                &bundle.config_path,
                format!("mounts[{i}]"),
                "idmapped mounts need CAP_SYS_ADMIN in the host's user namespace; they are not available rootless",
            ));
        }
    }
    Ok(())
}

/// The exec barrier: `start` opens exec.fifo, the init blocks writing it.
fn make_fifo(dir: &Path) -> Result<PathBuf> {
    let fifo = dir.join(state::FIFO_FILE);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::sys(format!("mkfifo {}", fifo.display()), e))?;
    // umask may have masked bits of the mode.
    let _ = std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622));
    Ok(fifo)
}

/// Phase "clone": clone the init into its new namespaces. A joined user
/// namespace is entered by an intermediate process. A pid namespace joined
/// by path: no process may appear in it before its root is the container's
/// (issue 11). The init is cloned outside and moves in after pivot_root
/// (InitRequest::pid_handover, the returned descriptor). It can only where
/// its own user namespace owns that pid namespace; in the other cases (a new
/// user namespace) the parent enters the pid namespace around the clone, as
/// runc does.
fn spawn_init(launch: &mut Launch, plan: &Plan) -> Result<(i32, Option<OwnedFd>)> {
    let userns_fd = match &plan.userns_path {
        Some(p) => Some(
            nix::fcntl::open(
                p,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| Error::sys(format!("open user namespace {}", p.display()), e))?,
        ),
        None => None,
    };
    let handover = match &plan.pid_path {
        Some(p) if can_hand_over(plan, p)? => Some(namespaces::open(p)?),
        _ => None,
    };
    let restore_pid = match (&plan.pid_path, &handover) {
        (Some(p), None) => Some(enter_pid_ns(p)?),
        _ => None,
    };
    // A new network namespace is made by the child itself, after its exec,
    // while we make the cgroup: making one is the slowest part of clone3
    // (see clone::PreExec::late_unshare). Not in a user namespace, which
    // must own it and is made with the clone.
    let late = if plan.userns {
        CloneFlags::empty()
    } else {
        plan.clone_flags & CloneFlags::CLONE_NEWNET
    };
    let pid = {
        let _g = explain::phase(Phase::Clone);
        match &userns_fd {
            // Joined user namespace: no CLONE_INTO_CGROUP (the cgroup entry
            // is the parent's, after the clone).
            Some(ns) => launch.spawn(
                plan.clone_flags,
                CloneFlags::empty(),
                Some(&clone::Join {
                    namespaces: &[(ns.as_raw_fd(), CloneFlags::CLONE_NEWUSER)],
                    chroot: None,
                }),
            ),
            None => launch.spawn(plan.clone_flags - late, late, None),
        }
    };
    if let Some(r) = restore_pid {
        let _ = nix::sched::setns(r.as_fd(), CloneFlags::CLONE_NEWPID);
    }
    Ok((pid?, handover))
}

/// A new user namespace: write its uid and gid maps, then let the child go on.
fn write_id_maps(launch: &mut Launch, bundle: &Bundle, pid: i32) -> Result<()> {
    let _g = explain::phase(Phase::Namespaces);
    launch.wait_maps_ready()?;
    let linux = bundle.spec.linux().clone().unwrap_or_default();
    linux::userns::write_maps(
        pid,
        linux.uid_mappings().as_deref().unwrap_or(&[]),
        linux.gid_mappings().as_deref().unwrap_or(&[]),
    )?;
    launch.channel().send(&"maps")
}

/// Send the init its request with what it needs open: it may not be able to
/// traverse the state root (in a user namespace it is not root on the
/// host), so exec.fifo and config.json go as descriptors, with the idmapped
/// trees and the pid namespace to hand over into.
fn send_init(
    launch: &mut Launch,
    req: InitRequest,
    fifo: Option<&Path>,
    cfg_copy: &Path,
    idmapped: Vec<(usize, OwnedFd)>,
    handover: Option<OwnedFd>,
    tasks: Vec<OwnedFd>,
) -> Result<()> {
    let fifo_fd = fifo
        .map(|fifo| {
            nix::fcntl::open(
                fifo,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| Error::sys(format!("open {}", fifo.display()), e))
        })
        .transpose()?;
    let cfg_fd = std::fs::File::open(cfg_copy).map_err(|e| Error::io("open", cfg_copy, e))?;
    let fds: Vec<i32> = fifo_fd
        .iter()
        .map(|f| f.as_raw_fd())
        .chain([cfg_fd.as_raw_fd()])
        .chain(idmapped.iter().map(|(_, t)| t.as_raw_fd()))
        .chain(handover.as_ref().map(|f| f.as_raw_fd()))
        .chain(tasks.iter().map(|f| f.as_raw_fd()))
        .collect();
    launch.send(req, &fds)
}

/// Open the v1 `tasks` files the init will write 0 into (see
/// [`InitRequest::join_cgroup`]).
fn open_tasks(files: &[PathBuf]) -> Result<Vec<OwnedFd>> {
    files
        .iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map(OwnedFd::from)
                .map_err(|e| Error::io("open", p, e))
        })
        .collect()
}

/// Does the config have hooks that run while the container is being
/// created (prestart, createRuntime, createContainer)?
fn create_hooks(bundle: &Bundle) -> bool {
    #[allow(deprecated)]
    bundle.spec.hooks().as_ref().is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|l| !l.is_empty())
            || h.create_runtime().as_ref().is_some_and(|l| !l.is_empty())
            || h.create_container().as_ref().is_some_and(|l| !l.is_empty())
    })
}

/// The init's mounts are done: run the prestart and createRuntime hooks.
pub(super) fn run_create_hooks(bundle: &Bundle, id: &str, record: &ContainerState) -> Result<()> {
    let st = |status| state::hook_state(id, status, record.pid, &bundle.dir, &record.annotations);
    let at = linux::hooks::Inherit::runtime(&bundle.dir);
    if let Some(h) = bundle.spec.hooks() {
        // Spec 1.0 runs prestart hooks once the container is created
        // (runtime-tools' hooks_stdin checks "created"; runc 1.1.5 says
        // "creating"); createRuntime hooks belong to the create operation
        // itself.
        #[allow(deprecated)]
        if let Some(list) = h.prestart() {
            linux::hooks::run("prestart", list, &st(state::OciStatus::Created), at)?;
        }
        let st = st(state::OciStatus::Creating);
        if let Some(list) = h.create_runtime() {
            linux::hooks::run("createRuntime", list, &st, at)?;
        }
    }
    Ok(())
}

/// The init is Ready: record the namespaces exec will join (those of
/// linux.namespaces, as the init is in them now, and readable only while
/// it lives) and the mounts it added; the record says created. The caller
/// saves it.
fn mark_created(bundle: &Bundle, record: &mut ContainerState) -> Result<()> {
    let pid = record.pid;
    let types = namespaces::types(bundle.spec.linux().as_ref());
    record.namespaces = Some(namespaces::record(pid, &types)?);
    record.phase = Some(StPhase::Created);
    if let Some(hm) = &mut record.host_mounts {
        hm.created = Some(linux::hostmounts::added(&record.rootfs, &hm.before));
    }
    explain::step(&catalog::STATE_CREATED, || {
        format!(
            "pid {pid}, start time {} (clock ticks after boot)",
            record.pid_start
        )
    });
    Ok(())
}

/// Can the init enter the pid namespace at `path` itself, after
/// pivot_root? Only from a user namespace that owns it: none of its own (the
/// runtime's, as root), or a joined one that owns the pid namespace.
fn can_hand_over(plan: &Plan, path: &Path) -> Result<bool> {
    if plan.new_userns {
        return Ok(false);
    }
    let Some(user) = &plan.userns_path else {
        return Ok(true);
    };
    let owner = namespaces::owner_id(namespaces::open(path)?.as_fd());
    Ok(owner.is_some() && owner == namespaces::ns_id(user))
}

fn enter_pid_ns(path: &Path) -> Result<OwnedFd> {
    let own = nix::fcntl::open(
        "/proc/self/ns/pid",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys("open /proc/self/ns/pid", e))?;
    namespaces::join(LinuxNamespaceType::Pid, path)?;
    Ok(own)
}

/// The cgroup facts a `cgroup` mount inside the container needs.
pub fn cgroup_mount_info(cg: Option<&dyn CgroupManager>, cgroupns: bool) -> CgroupMountInfo {
    let mut info = CgroupMountInfo {
        cgroupns,
        ..Default::default()
    };
    if let Some(cg) = cg {
        for (ctrl, dir) in cg.dirs() {
            if ctrl.is_empty() {
                info.v2 = Some(dir);
            } else {
                info.v1.push((ctrl, dir));
            }
        }
    }
    info
}

/// Write a pid file atomically (engines read it as soon as create returns).
/// Its directory may be writable by others: see [`crate::files::replace`].
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    explain::step(&catalog::PID_FILE, || format!("{pid} > {}", path.display()));
    crate::files::replace(path, pid.to_string().as_bytes(), 0o644)
        .map_err(|e| Error::msg(format!("--pid-file: {e}")))
}

/// Does the config give the container a pid namespace of its own (a new
/// one, not joined by path)?
pub(crate) fn private_pidns(spec: &oci_spec::runtime::Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_none())
}
