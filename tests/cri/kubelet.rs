//! The kubelet's side of the CRI, reduced to what the scenarios need: pod
//! and container configs filled in as the kubelet fills them (namespace
//! options, cgroup parent, log paths, the default masked and read-only
//! paths), a pod that tears itself down in the kubelet's order (stop and
//! remove each container, then stop and remove the sandbox), and ExecSync
//! helpers.

use crate::client::*;
use crate::node::Node;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The kubelet's default masked and read-only paths for a non-privileged
/// container (k8s.io/kubernetes pkg/securitycontext, ProcMount Default).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// How long a container may take to reach a state (a VM-mode container
/// boots a guest under TCG; the machine may be loaded).
pub const STATE_WAIT: Duration = Duration::from_secs(120);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One handler's view of the node.
pub struct Ctx<'a> {
    pub node: &'a Node,
    pub handler: &'a str,
}

impl<'a> Ctx<'a> {
    pub fn cri(&self) -> &'a Cri {
        self.node.cri()
    }

    /// A pod config as the kubelet sends it: its own log directory (made,
    /// as the kubelet makes it), a cgroup parent below the node's top
    /// cgroup, pod network and IPC, a pid namespace per container.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let uid = format!("{}-{}-{n}", self.node.u, self.handler);
        let log_dir = self.node.work.join("pods").join(&uid);
        std::fs::create_dir_all(&log_dir).unwrap();
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: format!("{name}-{n}"),
                uid: uid.clone(),
                namespace: "nk-cri".into(),
                attempt: 0,
            }),
            hostname: format!("{name}-{n}"),
            log_directory: log_dir.display().to_string(),
            dns_config: Some(DnsConfig {
                servers: vec![crate::node::GATEWAY.into()],
                searches: vec!["nk-cri.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/pod{uid}", self.node.cgroup_top),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox with this handler; the pod is torn down on drop.
    pub fn run_pod(&self, config: PodSandboxConfig) -> R<Pod<'a>> {
        let id = self.cri().run_pod(&config, self.handler)?;
        Ok(Pod {
            cri: self.cri(),
            id,
            config,
            containers: Default::default(),
            done: false,
        })
    }

    /// A pod from `pod_config(name)`, changed by `tweak`.
    pub fn pod(&self, name: &str, tweak: impl FnOnce(&mut PodSandboxConfig)) -> R<Pod<'a>> {
        let mut c = self.pod_config(name);
        tweak(&mut c);
        self.run_pod(c)
    }
}

/// A running pod sandbox and the containers made in it.
pub struct Pod<'a> {
    cri: &'a Cri,
    pub id: String,
    pub config: PodSandboxConfig,
    containers: std::cell::RefCell<Vec<String>>,
    done: bool,
}

impl Pod<'_> {
    /// A container config as the kubelet sends it for `args` (the
    /// container's command), with the pod's namespace options and the
    /// default masked and read-only paths; log at `<name>/<attempt>.log`.
    pub fn container_config(&self, name: &str, attempt: u32, args: &[&str]) -> ContainerConfig {
        let ns = self
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        std::fs::create_dir_all(self.log_dir().join(name)).unwrap();
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            image: Some(image_spec(crate::node::IMAGE)),
            command: args.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}/{attempt}.log"),
            linux: Some(LinuxContainerConfig {
                resources: None,
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: ns,
                    masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                    readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// CreateContainer.
    pub fn create(&self, config: &ContainerConfig) -> R<String> {
        let id = self.cri.create_container(&self.id, config, &self.config)?;
        self.containers.borrow_mut().push(id.clone());
        Ok(id)
    }

    /// CreateContainer + StartContainer + ContainerStatus until running.
    pub fn start(&self, config: &ContainerConfig) -> R<String> {
        let id = self.create(config)?;
        self.cri.start_container(&id)?;
        self.cri
            .wait_state(&id, ContainerState::ContainerRunning, STATE_WAIT)?;
        Ok(id)
    }

    /// CreateContainer + StartContainer of a container that may exit at
    /// once (no wait for running).
    pub fn start_or_created(&self, config: &ContainerConfig) -> R<String> {
        let id = self.create(config)?;
        self.cri.start_container(&id)?;
        Ok(id)
    }

    /// `start` of `container_config(name, 0, args)` changed by `tweak`.
    pub fn run(
        &self,
        name: &str,
        args: &[&str],
        tweak: impl FnOnce(&mut ContainerConfig),
    ) -> R<String> {
        let mut c = self.container_config(name, 0, args);
        tweak(&mut c);
        self.start(&c)
    }

    pub fn log_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.log_directory)
    }

    /// The CRI log file of a container.
    pub fn log_file(&self, name: &str, attempt: u32) -> PathBuf {
        self.log_dir().join(name).join(format!("{attempt}.log"))
    }

    /// The containerd-reported pid of the sandbox's process.
    pub fn sandbox_pid(&self) -> R<i32> {
        let (_, info) = self.cri.pod_status(&self.id)?;
        info["pid"]
            .as_i64()
            .map(|p| p as i32)
            .ok_or_else(|| format!("PodSandboxStatus info has no pid: {info}"))
    }

    /// Tear down as the kubelet does: stop (grace 0) and remove every
    /// container, then stop and remove the sandbox.
    pub fn teardown(&mut self) -> R<()> {
        self.done = true;
        let mut first_err = None;
        for c in self.containers.borrow_mut().drain(..) {
            if let Err(e) = self
                .cri
                .stop_container(&c, 0)
                .and_then(|_| self.cri.remove_container(&c))
            {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self
            .cri
            .stop_pod(&self.id)
            .and_then(|_| self.cri.remove_pod(&self.id))
        {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Forget a container the scenario removed itself.
    pub fn forget(&self, id: &str) {
        self.containers.borrow_mut().retain(|c| c != id);
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.teardown();
        }
    }
}

/// ExecSync of `sh -c script`: (exit code, stdout, stderr).
pub fn sh(cri: &Cri, id: &str, script: &str) -> R<(i32, String, String)> {
    let r = cri.exec_sync(id, &["sh", "-c", script], 60)?;
    Ok((
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    ))
}

/// ExecSync of `sh -c script` that must exit 0: its stdout, trimmed.
pub fn sh_ok(cri: &Cri, id: &str, script: &str) -> R<String> {
    let (code, out, err) = sh(cri, id, script)?;
    if code != 0 {
        return Err(format!(
            "`{script}` exited {code}: stdout {out:?} stderr {err:?}"
        ));
    }
    Ok(out.trim().to_string())
}

/// Fail with `what` unless `ok`.
pub fn expect(ok: bool, what: impl FnOnce() -> String) -> R<()> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// Fail unless `got == want`, saying what was compared.
pub fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> R<()> {
    expect(got == want, || {
        format!("{what}: got {got:?}, want {want:?}")
    })
}
