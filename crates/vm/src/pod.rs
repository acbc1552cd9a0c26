//! One VM per pod. Engines build a pod from an infra container (Podman's
//! pause, the CRI sandbox) whose namespaces the pod's other containers
//! join: their configs name `/proc/<infra pid>/ns/ipc`, the engine's netns
//! the infra already got, and so on. In VM mode those namespaces live in
//! the infra's guest, so a container that joins them is created in that
//! same VM, through its monitor and agent, instead of booting a VM of its
//! own.
//!
//! The pod's first container's monitor owns the VM (the *pod monitor*).
//! A later container (a *member*) still gets a monitor of its own, which
//! is the container's pid on the host, as engines expect; it boots
//! nothing. It hands the pod monitor, over the pod's `monitor.sock`:
//! its stdio, the listening socket of its own `monitor.sock` (so the
//! runtime's verbs on the member reach the pod monitor directly), and
//! detached copies of its rootfs and bind-mount sources (`open_tree`),
//! which the pod monitor attaches under `pod/<id>/` in the share. The
//! share is a shared mount in the pod monitor's private mount namespace,
//! so the new mounts propagate into virtiofsd's namespace (a slave of it)
//! and QEMU's 9p server sees them at once. The agent then creates the
//! container with the namespace paths mapped to the guest's
//! (`/proc/<guest pid>/ns/<type>`). The member's monitor waits for its
//! init's exit status and exits with it; signals it receives go to the
//! container.
//!
//! The VM lives as long as the pod's first container, as in Kata
//! Containers, whose shim stops the sandbox VM when the sandbox container
//! exits: engines stop and delete the infra container last.

use crate::error::{Error, Result};
use crate::monitor::{
    self, ClientMsg, ClientReq, MonitorConfig, PodJoin, Report, ShareItem,
    POD_SHARE_DIR as SHARE_DIR,
};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use sandbox::container::Runtime;
use sandbox::process::sync::Channel;
use sandbox::state::{Mode, Status};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use vm_protocol::Reply;

/// The CRI's annotations naming a container's sandbox and its kind.
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// A live VM-mode container of the state root.
struct VmContainer {
    id: String,
    /// The container whose VM it runs in (itself for a pod's first).
    owner: String,
    monitor_pid: i32,
    guest_pid: i32,
    /// (device, inode) of the network namespace its VM carries.
    netns: Option<(u64, u64)>,
}

fn ns_id(p: &Path) -> Option<(u64, u64)> {
    nix::sys::stat::stat(p).ok().map(|s| (s.st_dev, s.st_ino))
}

/// `/proc/<pid>/ns/<name>`'s pid.
fn proc_ns_pid(p: &Path) -> Option<i32> {
    let mut c = p.strip_prefix("/proc").ok()?.components();
    let pid = c.next()?.as_os_str().to_str()?.parse().ok()?;
    (c.next()?.as_os_str() == "ns").then_some(pid)
}

/// The name of a namespace under /proc/<pid>/ns.
fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Mount => "mnt",
        other => sandbox::linux::namespaces::name(other),
    }
}

fn live_vms(rt: &Runtime) -> Result<Vec<VmContainer>> {
    let mut out = Vec::new();
    for (st, status) in rt.list()? {
        let Mode::Vm(rec) = &st.mode else { continue };
        if !matches!(status, Status::Created | Status::Running | Status::Paused) {
            continue;
        }
        let owner = rec.pod.clone().unwrap_or_else(|| st.id.clone());
        let netns = if rec.pod.is_none() {
            std::fs::read(rt.store.dir(&st.id).join(crate::net::RECORD))
                .ok()
                .and_then(|b| serde_json::from_slice::<crate::net::NetRecord>(&b).ok())
                .and_then(|r| ns_id(&r.netns))
        } else {
            None
        };
        out.push(VmContainer {
            id: st.id.clone(),
            owner,
            monitor_pid: st.pid,
            guest_pid: rec.guest_pid,
            netns,
        });
    }
    Ok(out)
}

/// The pod VM a config joins, if any: a namespace path that is
/// `/proc/<pid>/ns/*` of a VM-mode container's monitor, or the network
/// namespace a pod VM already carries, or (the CRI) a sandbox-id
/// annotation naming a VM-mode sandbox. A config that joins a pod VM and
/// also a host namespace outside it is refused: both cannot be had.
pub fn find(spec: &Spec, rt: &Runtime) -> Result<Option<PodJoin>> {
    let Some(nss) = spec.linux().as_ref().and_then(|l| l.namespaces().clone()) else {
        return Ok(None);
    };
    let paths = nss.iter().any(|n| n.path().is_some());
    let sandbox_id = spec.annotations().as_ref().and_then(|a| {
        (a.get(CRI_CONTAINER_TYPE).map(String::as_str) == Some("container"))
            .then(|| a.get(CRI_SANDBOX_ID).cloned())
            .flatten()
    });
    if !paths && sandbox_id.is_none() {
        return Ok(None);
    }
    let vms = live_vms(rt)?;
    let mut pod: Option<String> = None;
    let mut mapped = nss.clone();
    let mut joined = Vec::new();
    let mut outside = Vec::new();
    for (i, ns) in nss.iter().enumerate() {
        let Some(p) = ns.path() else { continue };
        let by_pid = proc_ns_pid(p).and_then(|pid| vms.iter().find(|v| v.monitor_pid == pid));
        let by_netns = || {
            let id = ns_id(p)?;
            let owner = vms.iter().find(|v| v.netns == Some(id))?;
            Some(owner)
        };
        let hit = match by_pid {
            Some(v) => Some(v),
            None if ns.typ() == LinuxNamespaceType::Network => by_netns(),
            None => None,
        };
        let Some(v) = hit else {
            outside.push((i, ns.typ(), p.clone()));
            continue;
        };
        if let Some(other) = pod.as_ref().filter(|o| **o != v.owner) {
            return Err(Error::Msg(format!(
                "linux.namespaces[{i}] ({}) path {}: the config joins the VMs of two pods (containers {other} and {}); a VM-mode container can only run in one VM",
                sandbox::linux::namespaces::name(ns.typ()),
                p.display(),
                v.owner
            )));
        }
        pod = Some(v.owner.clone());
        let guest = PathBuf::from(format!("/proc/{}/ns/{}", v.guest_pid, proc_name(ns.typ())));
        joined.push(format!(
            "{} {} -> container {}'s in the guest ({})",
            sandbox::linux::namespaces::name(ns.typ()),
            p.display(),
            v.id,
            guest.display()
        ));
        mapped[i].set_path(Some(guest));
    }
    if pod.is_none() {
        pod = sandbox_id.filter(|s| vms.iter().any(|v| v.id == *s && v.owner == *s));
    }
    let Some(pod) = pod else { return Ok(None) };
    if let Some((i, t, p)) = outside.first() {
        return Err(Error::Msg(format!(
            "linux.namespaces[{i}] ({}) path {}: this container runs in the VM of pod container {pod} (it joins that pod's namespaces), and a host namespace outside that VM cannot be joined from inside it; join only the pod's namespaces, or use --mode=container",
            sandbox::linux::namespaces::name(*t),
            p.display()
        )));
    }
    let (st, _) = rt.load(&pod)?;
    let rec = st.mode.vm().cloned().unwrap_or_default();
    Ok(Some(PodJoin {
        id: pod.clone(),
        dir: rt.store.dir(&pod),
        qemu_pid: rec.qemu_pid,
        vcpus: rec.vcpus,
        memory_mib: rec.memory_mib,
        kernel: rec.kernel.clone(),
        namespaces: mapped,
        joined,
    }))
}

/// The pod monitor's settings a member inherits (kernel, accelerator,
/// share), from its monitor.json.
pub fn pod_config(pod: &PodJoin) -> Result<MonitorConfig> {
    let p = pod.dir.join(monitor::CONFIG);
    let raw = std::fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
    serde_json::from_slice(&raw).map_err(|e| Error::Msg(format!("{}: {e}", p.display())))
}

/// A detached copy of each host path the member shares (open_tree in the
/// host's mount namespace, where the engine mounted them), read-only where
/// asked: the pod monitor attaches them in its own.
fn trees(items: &[ShareItem]) -> Result<Vec<OwnedFd>> {
    use sandbox::linux::syscall::{mount_setattr, open_tree, MountAttr, OPEN_TREE_CLONE};
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let mut out = Vec::new();
    for it in items {
        let c = std::ffi::CString::new(it.src.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::Msg(format!("{}: a NUL in the path", it.src.display())))?;
        let rec = if it.recursive {
            libc::AT_RECURSIVE as libc::c_uint
        } else {
            0
        };
        let t = open_tree(
            None,
            &c,
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | rec,
        )
        .map_err(|e| {
            Error::sys(
                format!("open_tree({}, OPEN_TREE_CLONE)", it.src.display()),
                e,
            )
        })?;
        if it.read_only {
            let a = MountAttr {
                attr_set: MOUNT_ATTR_RDONLY,
                ..Default::default()
            };
            mount_setattr(Some(t.as_fd()), c"", 0, &a).map_err(|e| {
                Error::sys(
                    format!("mount_setattr({}, MOUNT_ATTR_RDONLY)", it.src.display()),
                    e,
                )
            })?;
        }
        out.push(t);
    }
    Ok(out)
}

/// Join the pod's VM: hand the pod monitor our stdio, our monitor.sock
/// and our files, and wait for the container to exist there. Returns the
/// connection (which then carries the exit status) and the guest pid.
fn join(cfg: &MonitorConfig, pod: &PodJoin, listener: OwnedFd) -> Result<(monitor::Client, i32)> {
    let prefix = format!("{SHARE_DIR}/{}/", cfg.id);
    let (items, guest) = monitor::guest_view(cfg, &prefix)?;
    let trees = trees(&items)?;
    let c = monitor::Client::connect(&pod.dir).map_err(|e| {
        Error::Msg(format!(
            "the pod's VM (container {}) cannot take this container: {e}",
            pod.id
        ))
    })?;
    let tty = cfg.config.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    let stdio = match cfg.tty_fd {
        Some(fd) => [fd, fd, fd],
        None => [0, 1, 2],
    };
    let mut fds: Vec<i32> = stdio.to_vec();
    fds.push(listener.as_raw_fd());
    fds.extend(trees.iter().map(|t| t.as_raw_fd()));
    c.send(
        &ClientReq::Join(Box::new(monitor::JoinReq {
            id: cfg.id.clone(),
            state_dir: cfg.state_dir.clone(),
            config: Box::new(guest),
            items,
            tty,
            systemd_cgroup: cfg.systemd_cgroup,
            no_pivot: cfg.no_pivot,
            no_new_keyring: cfg.no_new_keyring,
            log_level: cfg.log_level.clone(),
        })),
        &fds,
    )?;
    match c.recv()? {
        ClientMsg::Ok(Reply::Created { pid }) => Ok((c, pid)),
        ClientMsg::Ok(r) => Err(Error::Protocol(format!(
            "join the pod's VM: unexpected answer {r:?}"
        ))),
        ClientMsg::Err(e) => Err(Error::Remote(e)),
        ClientMsg::Exited(s) => Err(Error::Msg(format!(
            "join the pod's VM: the container exited ({s}) before it was created"
        ))),
    }
}

/// The member's monitor: join the pod's VM, report to `create`, then
/// forward signals to the container until its exit status comes; exit
/// with it. When the pod's VM stops first (its first container ended),
/// the container was killed with it: 128+SIGKILL.
pub fn run_member(cfg: MonitorConfig, pod: PodJoin, sync: Channel) -> i32 {
    let fail = |sync: &Channel, e: &Error| {
        monitor::log_line(&cfg, &format!("create failed: {e}"));
        let _ = sync.send(&Report::Failed(e.to_string()));
        monitor::VM_FAILED
    };
    match sync.recv::<String>() {
        Ok(Some((s, fds))) if s == "go" && fds.is_empty() => {}
        _ => return monitor::VM_FAILED,
    }
    if let Some(fd) = cfg.tty_fd {
        // The terminal's window-size changes then reach us as SIGWINCH.
        // SAFETY: TIOCSCTTY on the pty slave we were given; we are a session leader.
        unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    }
    let sfd = match monitor::signalfd() {
        Ok(s) => s,
        Err(e) => return fail(&sync, &e),
    };
    let joined = monitor::listen(&cfg.state_dir).and_then(|l| join(&cfg, &pod, l));
    let (c, guest_pid) = match joined {
        Ok(x) => x,
        Err(e) => return fail(&sync, &e),
    };
    monitor::log_line(
        &cfg,
        &format!(
            "created in the VM of pod container {} (qemu pid {}), guest pid {guest_pid}",
            pod.id, pod.qemu_pid
        ),
    );
    let net = match pod.joined.iter().find(|l| l.starts_with("network ")) {
        Some(l) => format!("the pod's network, in its VM: {l}"),
        None => "a new network namespace in the pod's VM: loopback only".to_string(),
    };
    let _ = sync.send(&Report::Created {
        guest_pid,
        qemu_pid: pod.qemu_pid,
        boot_ms: 0,
        net,
        boot: String::new(),
    });
    drop(sync);
    loop {
        let mut p = [
            libc::pollfd {
                fd: c.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll over an array that lives for the call.
        unsafe { libc::poll(p.as_mut_ptr(), 2, -1) };
        if p[1].revents != 0 {
            let mut info = [0u8; 128];
            // SAFETY: read whole signalfd_siginfo records into our buffer.
            while unsafe { libc::read(sfd.as_raw_fd(), info.as_mut_ptr().cast(), 128) } == 128 {
                let sig = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32;
                let req = match sig {
                    libc::SIGCHLD | libc::SIGPIPE | libc::SIGURG => continue,
                    libc::SIGWINCH => {
                        let Some(fd) = cfg.tty_fd else { continue };
                        // SAFETY: the pty slave create gave us stays open (fd tty_fd).
                        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                        match sandbox::linux::console::get_winsize(b) {
                            Some((rows, cols)) => ClientReq::Resize { rows, cols },
                            None => continue,
                        }
                    }
                    _ => {
                        monitor::log_line(
                            &cfg,
                            &format!("forwarding signal {sig} to the container"),
                        );
                        ClientReq::Kill {
                            signal: sig,
                            all: false,
                        }
                    }
                };
                let _ = c.send(&req, &[]);
            }
        }
        if p[0].revents != 0 {
            match c.recv() {
                Ok(ClientMsg::Exited(s)) => {
                    monitor::log_line(&cfg, &format!("container exited with status {s}"));
                    return s;
                }
                Ok(ClientMsg::Ok(_)) => {}
                Ok(ClientMsg::Err(e)) => monitor::log_line(&cfg, &e),
                Err(_) => {
                    monitor::log_line(
                        &cfg,
                        &format!(
                            "the pod's VM stopped (its first container, {}, ended): the container was killed with it",
                            pod.id
                        ),
                    );
                    return 128 + libc::SIGKILL;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_ns_paths_name_their_pid() {
        assert_eq!(proc_ns_pid(Path::new("/proc/42/ns/ipc")), Some(42));
        assert_eq!(proc_ns_pid(Path::new("/proc/self/ns/ipc")), None);
        assert_eq!(proc_ns_pid(Path::new("/run/netns/x")), None);
        assert_eq!(proc_name(LinuxNamespaceType::Network), "net");
        assert_eq!(proc_name(LinuxNamespaceType::Mount), "mnt");
        assert_eq!(proc_name(LinuxNamespaceType::Pid), "pid");
    }
}
