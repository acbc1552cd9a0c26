//! The config.json containerd 1.6's CRI plugin sends its runtime for a
//! default pod's container, captured for the bench (bench/fixtures/capture.sh
//! cri runs the ignored `capture_fixture` test of tests/cri.rs).
//!
//! The node gets one more RuntimeClass handler, `capture`, whose BinaryName
//! is bench/fixtures/capture-runtime.sh: it saves every config.json it is
//! asked to create (normalized, as `sandbox-N.json` for the pause container
//! and `container-N.json` for the others) and then runs runc. Each variant
//! below is one pod, sent as the kubelet sends a BestEffort pod of one
//! busybox container with nothing set (`kubectl run --image=busybox`):
//!
//! - pod: namespace `default`, a UUID, cgroup parent
//!   `/kubepods/besteffort/pod<uid>` (the cgroupfs driver's), pod network
//!   and IPC, a pid namespace per container, no sysctls;
//! - container: the kubelet's default masked and read-only paths, its
//!   BestEffort resources (cpu shares 2, period 100000, oom_score_adj 1000,
//!   a 0 limit for every huge page size of the host), the `kubernetes`
//!   service's environment variables, and its three mounts: the service
//!   account token (read-only), its own /etc/hosts, /dev/termination-log.
//!
//! Variants: `cri` with seccomp Unconfined (what the kubelet sends for a pod
//! without a seccompProfile unless it runs with --seccomp-default;
//! containerd then sets no profile), `cri-runtime-default` with
//! `seccompProfile: RuntimeDefault` (containerd's built-in profile).
//!
//! The cgroup path is written without the node's private top cgroup, as a
//! kubelet on a real node would have it.

use crate::client::*;
use crate::kubelet::Ctx;
use crate::node::list;
use std::path::Path;

/// The `kubernetes` service's variables the kubelet adds to every
/// container (the default ClusterIP service range's first address).
const SERVICE_ENV: &[(&str, &str)] = &[
    ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
    ("KUBERNETES_SERVICE_PORT", "443"),
    ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
    ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
    ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
    ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
    ("KUBERNETES_PORT_443_TCP_PORT", "443"),
    ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
];

/// The host's huge page sizes as the kubelet names them ("2MB", "1GB").
fn hugepage_sizes() -> Vec<String> {
    let mut kib: Vec<u64> = list(Path::new("/sys/kernel/mm/hugepages"))
        .iter()
        .filter_map(|e| {
            e.strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()
        })
        .collect();
    kib.sort();
    kib.into_iter()
        .map(|k| match k {
            k if k >= 1 << 20 && k % (1 << 20) == 0 => format!("{}GB", k >> 20),
            k if k >= 1 << 10 && k % (1 << 10) == 0 => format!("{}MB", k >> 10),
            k => format!("{k}KB"),
        })
        .collect()
}

fn uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("read /proc/sys/kernel/random/uuid")
        .trim()
        .to_string()
}

/// Run one default pod (seccomp `profile`) with the `capture` handler and
/// return the captured config of its container, with the node's top cgroup
/// taken out of the cgroup path.
pub fn one(cx: &Ctx, configs: &Path, profile: security_profile::ProfileType) -> R<String> {
    let before = list(configs);
    let uid = uuid();
    let top = cx.node.cgroup_top.clone();
    let pod = cx.pod("bb", |c| {
        let m = c.metadata.as_mut().unwrap();
        m.uid = uid.clone();
        m.namespace = "default".into();
        let l = c.linux.as_mut().unwrap();
        l.cgroup_parent = format!("/{top}/kubepods/besteffort/pod{uid}");
        l.security_context.as_mut().unwrap().seccomp = Some(SecurityProfile {
            profile_type: security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        });
    })?;
    // The kubelet's files for the pod, where it keeps them.
    let dir = cx.node.work.join("vol").join(&uid);
    let token = dir.join("volumes/kubernetes.io~projected/kube-api-access-bb");
    std::fs::create_dir_all(&token).map_err(|e| format!("mkdir {}: {e}", token.display()))?;
    for (f, text) in [("token", "x"), ("ca.crt", ""), ("namespace", "default")] {
        std::fs::write(token.join(f), text).map_err(|e| e.to_string())?;
    }
    let hosts = dir.join("etc-hosts");
    std::fs::write(
        &hosts,
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n",
    )
    .map_err(|e| e.to_string())?;
    let term = dir.join("containers/bb/termination-log");
    std::fs::create_dir_all(term.parent().unwrap()).map_err(|e| e.to_string())?;
    std::fs::write(&term, "").map_err(|e| e.to_string())?;
    let mount = |cp: &str, hp: &Path, ro: bool| Mount {
        container_path: cp.into(),
        host_path: hp.display().to_string(),
        readonly: ro,
        ..Default::default()
    };
    let id = pod.run("bb", &["sleep", "3600"], |c| {
        c.envs = SERVICE_ENV
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect();
        c.mounts = vec![
            mount(
                "/var/run/secrets/kubernetes.io/serviceaccount",
                &token,
                true,
            ),
            mount("/etc/hosts", &hosts, false),
            mount("/dev/termination-log", &term, false),
        ];
        let l = c.linux.as_mut().unwrap();
        l.resources = Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_shares: 2,
            oom_score_adj: 1000,
            hugepage_limits: hugepage_sizes()
                .into_iter()
                .map(|page_size| HugepageLimit {
                    page_size,
                    limit: 0,
                })
                .collect(),
            ..Default::default()
        });
        l.security_context.as_mut().unwrap().seccomp = Some(SecurityProfile {
            profile_type: profile as i32,
            localhost_ref: String::new(),
        });
    })?;
    let new: Vec<String> = list(configs)
        .into_iter()
        .filter(|f| f.starts_with("container-") && !before.contains(f))
        .collect();
    let [file] = new.as_slice() else {
        return Err(format!(
            "container {id}: the capture runtime saved {new:?}, not one container config \
             (see capture.err beside {})",
            configs.display()
        ));
    };
    let text = std::fs::read_to_string(configs.join(file)).map_err(|e| e.to_string())?;
    drop(pod);
    Ok(text.replace(&format!("\"/{top}/"), "\"/"))
}
