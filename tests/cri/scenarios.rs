//! The pod scenarios, each a sequence of CRI calls a kubelet makes, with
//! what must hold after each. A scenario returns Err(why) on the first
//! thing that does not hold; its pods are torn down either way.

use crate::client::*;
use crate::kubelet::*;
use crate::node::{self, wait_until};
use std::path::Path;
use std::time::{Duration, Instant};

/// How a scenario stands in VM mode (handler nk-vm).
#[derive(Clone, Copy)]
pub enum InVm {
    /// Run it with nk-vm as with the other handlers.
    Try,
    /// Not run: VM mode cannot do it yet, for this reason.
    Unsupported(&'static str),
    /// Run, but expected to fail for this reason (a known VM-mode gap):
    /// a failure is reported with the reason and does not fail the test.
    Gap(&'static str),
}

pub struct Scenario {
    pub name: &'static str,
    pub run: fn(&Ctx) -> R<()>,
    pub in_vm: InVm,
    /// Runs with no other pod on the node (it checks the node is clean).
    pub alone: bool,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "pod lifecycle: the kubelet's calls",
        run: lifecycle,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "two containers share net+IPC; pod IP and hostPort",
        run: shared_net_ipc,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "shareProcessNamespace",
        run: share_pid,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "init container finishes before the app",
        run: init_container,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "resources: limits in cgroups, update, stats",
        run: resources,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "over the memory limit: OOMKilled",
        run: oom_killed,
        in_vm: InVm::Gap(
            "the guest kernel kills the process in the guest's cgroup; the shim watches the \
             host cgroup's OOM events, which never fire, so the CRI reports Error, not OOMKilled",
        ),
        alone: false,
    },
    Scenario {
        name: "securityContext",
        run: security_context,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "liveness probe: ExecSync with timeout",
        run: liveness_probe,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "restart: created again, attempt 1",
        run: restart,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "StopContainer: SIGTERM, SIGKILL after grace",
        run: stop_grace,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "logs: CRI format, ReopenContainerLog",
        run: logs,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "hostNetwork pod",
        run: host_network,
        in_vm: InVm::Unsupported(
            "a VM has its own network stack and cannot share the node's; issue 18 refuses \
             host networking in VM mode with a clear error",
        ),
        alone: false,
    },
    Scenario {
        name: "projected files: hosts, resolv.conf, volumes",
        run: projected_files,
        in_vm: InVm::Try,
        alone: false,
    },
    Scenario {
        name: "many pods at once, then nothing left",
        run: many_pods,
        in_vm: InVm::Try,
        alone: true,
    },
];

/// How many pods `many_pods` starts at once: 20, but fewer VM-mode pods
/// (each is two TCG-emulated VMs on a 2-core machine).
pub fn many_pods_count(handler: &str) -> usize {
    if handler == "nk-vm" {
        3
    } else {
        20
    }
}

fn long() -> Duration {
    STATE_WAIT
}

/// busybox wget from the node's network namespace (the pod IP and host
/// ports are reachable only there), retried until `within`.
fn fetch_from_node(cx: &Ctx, url: &str, within: Duration) -> R<String> {
    let mut last = String::new();
    let ok = wait_until(within, || {
        // (busybox 1.35's wget -T crashes: coreutils' timeout bounds it.)
        match cx
            .node
            .in_netns("timeout")
            .args(["5", "busybox", "wget", "-q", "-O", "-", url])
            .stdin(std::process::Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => {
                last = String::from_utf8_lossy(&o.stdout).trim().to_string();
                true
            }
            Ok(o) => {
                last = String::from_utf8_lossy(&o.stderr).trim().to_string();
                false
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    if ok {
        Ok(last)
    } else {
        Err(format!(
            "wget {url} from the node failed for {within:?}: {last}"
        ))
    }
}

/// The namespace link (`net:[4026...]`) of a host process.
fn host_ns(pid: i32, ns: &str) -> R<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.display().to_string())
        .map_err(|e| format!("readlink /proc/{pid}/ns/{ns}: {e}"))
}

/// Wait until the file holds `needle`; its content.
fn wait_file_contains(path: &Path, needle: &str, within: Duration) -> R<String> {
    let mut text = String::new();
    if wait_until(within, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.contains(needle)
    }) {
        Ok(text)
    } else {
        Err(format!(
            "{} does not contain {needle:?} after {within:?}: {text:?}",
            path.display()
        ))
    }
}

/// The kubelet's whole sequence on one pod with one container.
fn lifecycle(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let mut pod = cx.pod("life", |_| {})?;
    let (st, info) = cri.pod_status(&pod.id)?;
    expect_eq("pod state", st.state, PodSandboxState::SandboxReady as i32)?;
    expect_eq(
        "pod runtime_handler",
        st.runtime_handler.as_str(),
        cx.handler,
    )?;
    let ip = st.network.map(|n| n.ip).unwrap_or_default();
    expect(ip.starts_with("10.88.0."), || {
        format!("pod IP {ip:?} is not from the CNI subnet {}", node::SUBNET)
    })?;
    expect(info["pid"].as_i64().unwrap_or(0) > 0, || {
        format!("no sandbox pid in the verbose status: {info}")
    })?;

    let cfg = pod.container_config("app", 0, &["sh", "-c", "echo started; exec sleep 3600"]);
    let id = pod.create(&cfg)?;
    let created = cri.container_status(&id)?;
    expect_eq(
        "state after CreateContainer",
        created.state,
        ContainerState::ContainerCreated as i32,
    )?;
    cri.start_container(&id)?;
    let st = cri.wait_state(&id, ContainerState::ContainerRunning, long())?;
    expect(st.started_at > 0, || format!("started_at unset: {st:?}"))?;
    expect_eq(
        "ContainerStatus log_path",
        st.log_path.as_str(),
        pod.log_file("app", 0).to_str().unwrap(),
    )?;
    expect_eq(
        "ExecSync output",
        sh_ok(cri, &id, "echo $((6 * 7))")?.as_str(),
        "42",
    )?;

    let stats = cri.container_stats(&id)?;
    let mem = stats
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map_or(0, |v| v.value);
    expect(mem > 0, || {
        format!("ContainerStats: no memory working set: {stats:?}")
    })?;
    let listed = cri.list_container_stats(&pod.id)?;
    expect(
        listed
            .iter()
            .any(|s| s.attributes.as_ref().is_some_and(|a| a.id == id)),
        || format!("ListContainerStats of the pod misses {id}: {listed:?}"),
    )?;

    cri.update_resources(
        &id,
        &LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 30_000,
            memory_limit_in_bytes: 80 << 20,
            ..Default::default()
        },
    )?;
    let limits = read_limits(cri, &id)?;
    expect(limits.quota == 30_000 && limits.memory == 80 << 20, || {
        format!("after UpdateContainerResources the cgroup says {limits:?}")
    })?;

    cri.reopen_log(&id)?;
    wait_file_contains(&pod.log_file("app", 0), "started", long())?;

    cri.stop_container(&id, 2)?;
    let st = cri.wait_state(&id, ContainerState::ContainerExited, long())?;
    expect(st.finished_at >= st.started_at, || {
        format!("finished_at before started_at: {st:?}")
    })?;
    cri.remove_container(&id)?;
    pod.forget(&id);
    expect(cri.container_status(&id).is_err(), || {
        format!("ContainerStatus still answers for removed {id}")
    })?;

    cri.stop_pod(&pod.id)?;
    let (st, _) = cri.pod_status(&pod.id)?;
    expect_eq(
        "pod state after StopPodSandbox",
        st.state,
        PodSandboxState::SandboxNotready as i32,
    )?;
    cri.remove_pod(&pod.id)?;
    expect(cri.pod_status(&pod.id).is_err(), || {
        format!("PodSandboxStatus still answers for removed {}", pod.id)
    })?;
    pod.teardown().or(Ok(()))
}

/// Two containers in one pod: one serves HTTP and writes to /dev/shm, the
/// other reaches it on localhost and reads the file; both are in the
/// sandbox's net, IPC and UTS namespaces. The pod IP and a hostPort reach
/// the server from the node.
fn shared_net_ipc(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("shared", |c| {
        c.port_mappings = vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 8080,
            host_port: 18080,
            host_ip: String::new(),
        }]
    })?;
    let server = pod.run(
        "server",
        &[
            "sh",
            "-c",
            "echo shared-net > /www/index.html; echo from-server > /dev/shm/token; exec httpd -f -p 8080 -h /www",
        ],
        |_| {},
    )?;
    let client = pod.run("client", &["sleep", "3600"], |_| {})?;
    let got = sh_ok(
        cri,
        &client,
        "for i in $(seq 100); do timeout 3 wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1",
    )?;
    expect_eq(
        "the client's GET of localhost:8080",
        got.as_str(),
        "shared-net",
    )?;
    expect_eq(
        "/dev/shm/token seen by the client",
        sh_ok(cri, &client, "cat /dev/shm/token")?.as_str(),
        "from-server",
    )?;
    let pid = pod.sandbox_pid()?;
    for ns in ["net", "ipc", "uts"] {
        // With nk-vm the pod's namespaces are its VM's: the sandbox's host
        // pid is its monitor's, so the containers are compared with each
        // other (and pid 1 of a shared pid namespace shows the sandbox).
        let want = if cx.handler == "nk-vm" {
            sh_ok(cri, &server, &format!("readlink /proc/self/ns/{ns}"))?
        } else {
            host_ns(pid, ns)?
        };
        for (who, id) in [("server", &server), ("client", &client)] {
            let got = sh_ok(cri, id, &format!("readlink /proc/self/ns/{ns}"))?;
            expect_eq(
                &format!("{who}'s {ns} namespace vs the sandbox's"),
                got,
                want.clone(),
            )?;
        }
    }
    let hostname = pod.config.hostname.clone();
    expect_eq(
        "hostname in the client",
        sh_ok(cri, &client, "hostname")?,
        hostname,
    )?;
    let pid_a = sh_ok(cri, &server, "readlink /proc/self/ns/pid")?;
    let pid_b = sh_ok(cri, &client, "readlink /proc/self/ns/pid")?;
    expect(pid_a != pid_b, || {
        format!("pid namespace shared without shareProcessNamespace: {pid_a}")
    })?;

    let (st, _) = cri.pod_status(&pod.id)?;
    let ip = st.network.map(|n| n.ip).unwrap_or_default();
    let got = fetch_from_node(cx, &format!("http://{ip}:8080/"), long())?;
    expect_eq(
        "GET of the pod IP from the node",
        got.as_str(),
        "shared-net",
    )?;
    let got = fetch_from_node(cx, &format!("http://{}:18080/", node::GATEWAY), long())?;
    expect_eq(
        "GET of hostPort 18080 from the node",
        got.as_str(),
        "shared-net",
    )?;
    Ok(())
}

/// shareProcessNamespace: every container and the pause process in one pid
/// namespace, pause as its pid 1, reaping orphans.
fn share_pid(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("sharepid", |c| {
        let ns = c
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut())
            .unwrap();
        ns.pid = NamespaceMode::Pod as i32;
    })?;
    let a = pod.run("a", &["sleep", "3601"], |_| {})?;
    let b = pod.run("b", &["sleep", "3602"], |_| {})?;
    let ps_b = sh_ok(cri, &b, "ps -o pid,args")?;
    expect(ps_b.contains("sleep 3601"), || {
        format!("b does not see a's process: {ps_b}")
    })?;
    let ps_a = sh_ok(cri, &a, "ps -o pid,args")?;
    expect(ps_a.contains("sleep 3602"), || {
        format!("a does not see b's process: {ps_a}")
    })?;
    let one = sh_ok(cri, &a, "tr '\\0' ' ' </proc/1/cmdline")?;
    expect_eq("pid 1 of the pod", one.as_str(), "/pause")?;
    // With nk-vm the sandbox's host pid is its monitor's: a is compared
    // with b, whose pid 1 (/pause, above) is the sandbox's.
    let want = if cx.handler == "nk-vm" {
        sh_ok(cri, &b, "readlink /proc/self/ns/pid")?
    } else {
        host_ns(pod.sandbox_pid()?, "pid")?
    };
    expect_eq(
        "a's pid namespace vs the sandbox's",
        sh_ok(cri, &a, "readlink /proc/self/ns/pid")?,
        want,
    )?;
    // An orphan (its parent exits at once) is reparented to pause and reaped.
    sh_ok(cri, &b, "(sleep 0.3 &) ; true")?;
    let mut ps = String::new();
    let reaped = wait_until(long(), || {
        ps = sh_ok(cri, &a, "ps -o stat,args").unwrap_or_default();
        !ps.contains("sleep 0.3") && !ps.lines().any(|l| l.trim_start().starts_with('Z'))
    });
    expect(reaped, || {
        format!("the orphan was not reaped by pause: {ps}")
    })
}

/// An init container runs to completion (exit 0, Completed) before the
/// app container is created; the app sees what it wrote to a shared volume.
fn init_container(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("init", |_| {})?;
    let vol = cx.node.work.join("vol").join(format!("{}-work", pod.id));
    std::fs::create_dir_all(&vol).map_err(|e| e.to_string())?;
    let mount = Mount {
        container_path: "/work".into(),
        host_path: vol.display().to_string(),
        ..Default::default()
    };
    let mut init = pod.container_config(
        "init",
        0,
        &["sh", "-c", "sleep 0.5; echo initialized > /work/ready"],
    );
    init.mounts = vec![mount.clone()];
    let init_id = pod.start_or_created(&init)?;
    let st = cri.wait_state(&init_id, ContainerState::ContainerExited, long())?;
    expect_eq("init exit code", st.exit_code, 0)?;
    expect_eq("init reason", st.reason.as_str(), "Completed")?;
    expect(vol.join("ready").exists(), || {
        "the init container's file is not in the volume".into()
    })?;

    let app = pod.run("app", &["sleep", "3600"], |c| c.mounts = vec![mount])?;
    expect_eq(
        "the app reads the init container's file",
        sh_ok(cri, &app, "cat /work/ready")?.as_str(),
        "initialized",
    )?;
    let app_st = cri.container_status(&app)?;
    expect(app_st.started_at >= st.finished_at, || {
        format!(
            "app started ({}) before init finished ({})",
            app_st.started_at, st.finished_at
        )
    })
}

/// The cgroup limits a container sees, v1 (the host here) or v2 (a guest).
#[derive(Debug, PartialEq)]
struct Limits {
    quota: i64,
    period: i64,
    /// cpu.shares (v1) or cpu.weight (v2).
    shares: i64,
    memory: i64,
    v2: bool,
}

fn read_limits(cri: &Cri, id: &str) -> R<Limits> {
    let out = sh_ok(
        cri,
        id,
        "c=/sys/fs/cgroup; \
         if [ -f $c/cpu/cpu.cfs_quota_us ]; then \
           echo v1 $(cat $c/cpu/cpu.cfs_quota_us $c/cpu/cpu.cfs_period_us $c/cpu/cpu.shares $c/memory/memory.limit_in_bytes); \
         else \
           echo v2 $(cat $c/cpu.max) $(cat $c/cpu.weight $c/memory.max); \
         fi",
    )?;
    let f: Vec<&str> = out.split_whitespace().collect();
    let n = |i: usize| -> R<i64> {
        f.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("cgroup limits not understood: {out:?}"))
    };
    Ok(Limits {
        quota: n(1)?,
        period: n(2)?,
        shares: n(3)?,
        memory: n(4)?,
        v2: f.first() == Some(&"v2"),
    })
}

/// cpu.shares as runc converts it to cgroup v2's cpu.weight.
fn weight(shares: i64) -> i64 {
    1 + ((shares - 2) * 9999) / 262142
}

/// Requests and limits as the kubelet turns them into CRI resources
/// (cpu: 500m request -> shares 512, 500m limit -> quota 50000/100000;
/// memory limit 64 MiB), read back inside; UpdateContainerResources
/// changes them; ContainerStats and ListContainerStats report usage.
fn resources(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("res", |_| {})?;
    let res = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        ..Default::default()
    };
    let id = pod.run("app", &["sleep", "3600"], |c| {
        c.linux.as_mut().unwrap().resources = Some(res.clone())
    })?;
    let got = read_limits(cri, &id)?;
    let want = |quota, shares: i64, memory, v2: bool| Limits {
        quota,
        period: 100_000,
        shares: if v2 { weight(shares) } else { shares },
        memory,
        v2,
    };
    expect_eq("limits inside", &got, &want(50_000, 512, 64 << 20, got.v2))?;

    let res2 = LinuxContainerResources {
        cpu_quota: 20_000,
        cpu_shares: 256,
        memory_limit_in_bytes: 96 << 20,
        ..res
    };
    cri.update_resources(&id, &res2)?;
    let got = read_limits(cri, &id)?;
    expect_eq(
        "limits inside after UpdateContainerResources",
        &got,
        &want(20_000, 256, 96 << 20, got.v2),
    )?;

    // Some CPU time to report.
    sh_ok(
        cri,
        &id,
        "i=0; while [ $i -lt 20000 ]; do i=$((i + 1)); done",
    )?;
    let s = cri.container_stats(&id)?;
    let cpu = s
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map_or(0, |v| v.value);
    let mem = s
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map_or(0, |v| v.value);
    expect(cpu > 0 && mem > 0, || {
        format!("ContainerStats without usage: {s:?}")
    })?;
    let all = cri.list_container_stats(&pod.id)?;
    expect(
        all.iter()
            .any(|s| s.attributes.as_ref().is_some_and(|a| a.id == id)),
        || format!("ListContainerStats misses {id}"),
    )
}

/// A container allocating past its memory limit is killed by the kernel
/// and reported exited with reason OOMKilled.
fn oom_killed(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("oom", |_| {})?;
    let mut cfg = pod.container_config(
        "hog",
        0,
        &[
            "sh",
            "-c",
            "exec dd if=/dev/zero of=/dev/null bs=128M count=1",
        ],
    );
    cfg.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 32 << 20,
        ..Default::default()
    });
    let id = pod.start_or_created(&cfg)?;
    let st = cri.wait_state(&id, ContainerState::ContainerExited, long())?;
    expect(st.reason == "OOMKilled" && st.exit_code == 137, || {
        format!(
            "reason {:?}, exit code {}, want OOMKilled and 137 (message {:?})",
            st.reason, st.exit_code, st.message
        )
    })
}

fn status_fields(cri: &Cri, id: &str) -> R<std::collections::BTreeMap<String, String>> {
    let out = sh_ok(
        cri,
        id,
        "grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// A restricted container (runAsUser/Group, read-only root, capabilities
/// drop ALL add NET_BIND_SERVICE, allowPrivilegeEscalation false, seccomp
/// RuntimeDefault, the default masked and read-only paths) beside a root
/// one (drop ALL add CHOWN, no seccomp profile, privilege escalation
/// allowed).
fn security_context(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("sec", |_| {})?;
    let restricted = pod.run("restricted", &["sleep", "3600"], |c| {
        let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sc.run_as_user = Some(Int64Value { value: 1000 });
        sc.run_as_group = Some(Int64Value { value: 3000 });
        sc.readonly_rootfs = true;
        sc.capabilities = Some(Capability {
            drop_capabilities: vec!["ALL".into()],
            add_capabilities: vec!["NET_BIND_SERVICE".into()],
            ..Default::default()
        });
        sc.no_new_privs = true;
        sc.seccomp = Some(SecurityProfile {
            profile_type: security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        });
    })?;
    // What containerd 1.6 made of it, in the bundle the runtime got:
    // RuntimeDefault is containerd's own built-in profile (an allowlist,
    // personality() allowed only with a few values); masked and read-only
    // paths are the kubelet's lists as sent.
    let spec = cx.node.bundle_config(&restricted)?;
    let seccomp = &spec["linux"]["seccomp"];
    let personality = seccomp["syscalls"].as_array().is_some_and(|rules| {
        rules.iter().any(|r| {
            r["names"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n == "personality"))
                && r["args"].as_array().is_some_and(|a| !a.is_empty())
        })
    });
    expect(
        seccomp["defaultAction"] == "SCMP_ACT_ERRNO" && personality,
        || format!("RuntimeDefault is not containerd's allowlist profile: {seccomp}"),
    )?;
    expect_eq(
        "maskedPaths in the spec",
        &spec["linux"]["maskedPaths"],
        &serde_json::json!(MASKED_PATHS),
    )?;
    expect_eq(
        "readonlyPaths in the spec",
        &spec["linux"]["readonlyPaths"],
        &serde_json::json!(READONLY_PATHS),
    )?;
    expect_eq(
        "id -u; id -g",
        sh_ok(cri, &restricted, "id -u; id -g")?.as_str(),
        "1000\n3000",
    )?;
    let (code, _, err) = sh(cri, &restricted, "touch /rootfs-write")?;
    expect(code != 0 && err.contains("Read-only file system"), || {
        format!("write to a read-only root: exit {code}, {err:?}")
    })?;
    let f = status_fields(cri, &restricted)?;
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    expect_eq(
        "CapBnd (NET_BIND_SERVICE only)",
        get("CapBnd").as_str(),
        "0000000000000400",
    )?;
    expect_eq(
        "CapEff of uid 1000",
        get("CapEff").as_str(),
        "0000000000000000",
    )?;
    expect_eq("NoNewPrivs", get("NoNewPrivs").as_str(), "1")?;
    expect_eq("Seccomp (filter mode)", get("Seccomp").as_str(), "2")?;
    let (code, out, _) = sh(cri, &restricted, "seccomp-probe")?;
    expect(code == 1 && out.contains("denied"), || {
        format!("RuntimeDefault does not deny personality(ADDR_NO_RANDOMIZE): exit {code}, {out:?}")
    })?;
    let masked = sh_ok(
        cri,
        &restricted,
        "for f in /proc/kcore /proc/keys /proc/timer_list /sys/firmware; do \
           if [ -d $f ]; then echo $f $(ls -A $f | wc -l); \
           elif [ -e $f ]; then echo $f $(wc -c <$f); else echo $f absent; fi; \
         done",
    )?;
    // (A path the kernel does not have is not masked: /proc/kcore here.)
    for l in masked.lines() {
        expect(l.ends_with(" 0") || l.ends_with(" absent"), || {
            format!("not masked: {masked}")
        })?;
    }
    expect(
        masked.contains("/proc/keys 0") && masked.contains("/sys/firmware 0"),
        || format!("not masked: {masked}"),
    )?;
    let ro = sh_ok(
        cri,
        &restricted,
        "for p in /proc/sys /proc/sysrq-trigger /proc/bus /proc/irq; do \
           [ -e $p ] || { echo $p absent; continue; }; \
           awk -v p=$p '$5 == p {split($6, o, \",\"); print p, o[1]}' /proc/self/mountinfo | tail -n 1; \
         done",
    )?;
    // (A path the kernel lacks is not mounted: /proc/sysrq-trigger here.)
    expect(
        ro.lines().count() == 4
            && ro
                .lines()
                .all(|l| l.ends_with(" ro") || l.ends_with(" absent"))
            && ro.contains("/proc/sys ro"),
        || format!("read-only paths not mounted read-only: {ro:?}"),
    )?;

    let root = pod.run("rootcaps", &["sleep", "3600"], |c| {
        let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sc.capabilities = Some(Capability {
            drop_capabilities: vec!["ALL".into()],
            add_capabilities: vec!["CHOWN".into()],
            ..Default::default()
        });
    })?;
    let spec = cx.node.bundle_config(&root)?;
    expect(spec["linux"]["seccomp"].is_null(), || {
        "a seccomp profile in the spec though none was asked".into()
    })?;
    let f = status_fields(cri, &root)?;
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    expect_eq(
        "root's CapEff (CHOWN only)",
        get("CapEff").as_str(),
        "0000000000000001",
    )?;
    expect_eq("root's NoNewPrivs", get("NoNewPrivs").as_str(), "0")?;
    expect_eq(
        "root's Seccomp (no profile asked)",
        get("Seccomp").as_str(),
        "0",
    )?;
    sh_ok(cri, &root, "chown 1000 /tmp && touch /rootfs-write")?;
    let (code, _, _) = sh(cri, &root, "mknod /tmp/null c 1 3")?;
    expect(code != 0, || "mknod succeeded without CAP_MKNOD".into())
}

/// An exec probe as the kubelet runs it: ExecSync with a timeout; a failing
/// probe's exit code; a probe past its timeout is killed and reported.
fn liveness_probe(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("probe", |_| {})?;
    let id = pod.run(
        "app",
        &["sh", "-c", "touch /tmp/healthy; exec sleep 3600"],
        |_| {},
    )?;
    let probe = |cmd: &[&str], t| cri.exec_sync(&id, cmd, t);
    // Running does not mean the command got to its first line yet (the
    // kubelet has initialDelaySeconds): probe until it passes once.
    let mut last = None;
    let healthy = wait_until(long(), || {
        let r = probe(&["cat", "/tmp/healthy"], 5);
        let ok = matches!(&r, Ok(r) if r.exit_code == 0);
        last = Some(r);
        ok
    });
    expect(healthy, || format!("the probe never passed: last {last:?}"))?;
    sh_ok(cri, &id, "rm /tmp/healthy")?;
    let bad = probe(&["cat", "/tmp/healthy"], 5)?;
    expect(
        bad.exit_code == 1 && String::from_utf8_lossy(&bad.stderr).contains("No such file"),
        || format!("failing probe: {bad:?}"),
    )?;
    let t0 = Instant::now();
    let slow = probe(&["sleep", "30"], 2);
    let took = t0.elapsed();
    match slow {
        Err(e) if e.to_lowercase().contains("timeout") || e.contains("DeadlineExceeded") => {}
        other => return Err(format!("a probe past its 2 s timeout returned {other:?}")),
    }
    expect(
        took >= Duration::from_secs(2) && took < Duration::from_secs(29),
        || format!("the timed-out probe returned after {took:?}"),
    )?;
    let mut ps = String::new();
    let gone = wait_until(long(), || {
        ps = sh_ok(cri, &id, "ps -o args").unwrap_or_default();
        !ps.lines().any(|l| l.trim() == "sleep 30")
    });
    expect(gone, || {
        format!("the timed-out probe's process is still there: {ps}")
    })?;
    let st = cri.container_status(&id)?;
    expect_eq(
        "container state after the probes",
        st.state,
        ContainerState::ContainerRunning as i32,
    )
}

/// The container exits (3); the kubelet creates it again in the same pod
/// as attempt 1, with its own log file; then removes the dead one.
fn restart(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("restart", |_| {})?;
    let first = pod.container_config("app", 0, &["sh", "-c", "echo attempt-0; exit 3"]);
    let id0 = pod.start_or_created(&first)?;
    let st0 = cri.wait_state(&id0, ContainerState::ContainerExited, long())?;
    expect(st0.exit_code == 3 && st0.reason == "Error", || {
        format!(
            "first attempt: exit {} reason {:?}",
            st0.exit_code, st0.reason
        )
    })?;
    let second = pod.container_config("app", 1, &["sh", "-c", "echo attempt-1; exec sleep 3600"]);
    let id1 = pod.start(&second)?;
    expect(id1 != id0, || "attempt 1 reused the container id".into())?;
    let st1 = cri.container_status(&id1)?;
    expect_eq(
        "attempt in ContainerStatus",
        st1.metadata.map(|m| m.attempt),
        Some(1),
    )?;
    wait_file_contains(&pod.log_file("app", 0), "attempt-0", long())?;
    wait_file_contains(&pod.log_file("app", 1), "attempt-1", long())?;
    cri.remove_container(&id0)?;
    pod.forget(&id0);
    let (ps, _) = cri.pod_status(&pod.id)?;
    expect_eq("pod state", ps.state, PodSandboxState::SandboxReady as i32)?;
    expect_eq(
        "attempt 1 still running",
        cri.container_status(&id1)?.state,
        ContainerState::ContainerRunning as i32,
    )
}

/// StopContainer's grace period: a container that ignores SIGTERM gets it,
/// then SIGKILL once the period is over (exit 137); one that exits on
/// SIGTERM stops at once with its own code.
fn stop_grace(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("grace", |_| {})?;
    let stubborn = pod.run(
        "stubborn",
        &[
            "sh",
            "-c",
            "trap 'echo got-TERM' TERM; echo ready; while :; do sleep 0.2; done",
        ],
        |_| {},
    )?;
    let polite = pod.run(
        "polite",
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.2; done",
        ],
        |_| {},
    )?;
    wait_file_contains(&pod.log_file("stubborn", 0), "ready", long())?;
    wait_file_contains(&pod.log_file("polite", 0), "ready", long())?;

    let t0 = Instant::now();
    cri.stop_container(&stubborn, 3)?;
    let took = t0.elapsed();
    let st = cri.wait_state(&stubborn, ContainerState::ContainerExited, long())?;
    expect_eq("exit code after SIGKILL", st.exit_code, 137)?;
    expect(took >= Duration::from_secs(3), || {
        format!("StopContainer with grace 3 s returned after {took:?}")
    })?;
    wait_file_contains(&pod.log_file("stubborn", 0), "got-TERM", long())?;

    let t0 = Instant::now();
    cri.stop_container(&polite, 60)?;
    let took = t0.elapsed();
    let st = cri.wait_state(&polite, ContainerState::ContainerExited, long())?;
    expect_eq("exit code of the SIGTERM handler", st.exit_code, 0)?;
    expect(took < Duration::from_secs(55), || {
        format!("a container exiting on SIGTERM took {took:?} to stop (grace 60 s)")
    })?;
    wait_file_contains(&pod.log_file("polite", 0), "bye", long()).map(drop)
}

/// One CRI log line: `<RFC 3339 time> <stdout|stderr> <F|P> <text>`.
fn parse_log_line(line: &str) -> R<(&str, &str, &str)> {
    let bad = || format!("not a CRI log line: {:?}", &line[..line.len().min(120)]);
    let (ts, rest) = line.split_once(' ').ok_or_else(bad)?;
    let (stream, rest) = rest.split_once(' ').ok_or_else(bad)?;
    let (tag, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let b = ts.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (ts.ends_with('Z') || ts[19..].contains(['+', '-']));
    if !shape || !["stdout", "stderr"].contains(&stream) || !["F", "P"].contains(&tag) {
        return Err(bad());
    }
    Ok((stream, tag, text))
}

/// The log file in the CRI format (timestamp, stream, full/partial tag),
/// a line longer than containerd's 16 KiB split into partial entries, and
/// ReopenContainerLog starting a new file after the old one was rotated.
fn logs(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("logs", |_| {})?;
    let id = pod.run(
        "app",
        &[
            "sh",
            "-c",
            "echo out-line; echo err-line >&2; head -c 20000 /dev/zero | tr '\\0' a; echo; echo ready; \
             while :; do if [ -e /tmp/more ]; then rm /tmp/more; echo after-reopen; fi; sleep 0.1; done",
        ],
        |_| {},
    )?;
    let log = pod.log_file("app", 0);
    let text = wait_file_contains(&log, " ready", long())?;
    let mut entries = Vec::new();
    for l in text.lines() {
        entries.push(parse_log_line(l)?);
    }
    let has = |s: &str, t: &str| {
        entries
            .iter()
            .any(|&(es, et, ex)| es == s && et == "F" && ex == t)
    };
    expect(
        has("stdout", "out-line") && has("stderr", "err-line") && has("stdout", "ready"),
        || format!("stdout/stderr lines missing: {entries:?}"),
    )?;
    let long_line: String = entries
        .iter()
        .filter(|e| e.2.starts_with('a'))
        .map(|e| e.2)
        .collect();
    let partials = entries.iter().filter(|e| e.1 == "P").count();
    expect(long_line.len() == 20000 && partials >= 1, || {
        format!(
            "the 20000-byte line came as {} bytes in {} entries ({partials} partial)",
            long_line.len(),
            entries.iter().filter(|e| e.2.starts_with('a')).count()
        )
    })?;

    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).map_err(|e| format!("rotate the log: {e}"))?;
    cri.reopen_log(&id)?;
    sh_ok(cri, &id, "touch /tmp/more")?;
    let new = wait_file_contains(&log, "after-reopen", long())?;
    parse_log_line(new.lines().next().unwrap_or(""))?;
    let old = std::fs::read_to_string(&rotated).unwrap_or_default();
    expect(!old.contains("after-reopen"), || {
        "output after ReopenContainerLog went to the rotated file".into()
    })
}

/// hostNetwork: the container is in the node's network namespace (here the
/// test's), serves on the node's loopback, and has the node's hostname.
fn host_network(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("hostnet", |c| {
        let ns = c
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut())
            .unwrap();
        ns.network = NamespaceMode::Node as i32;
        // The kubelet sends no hostname for a hostNetwork pod: it has the node's.
        c.hostname.clear();
    })?;
    let id = pod.run(
        "web",
        &[
            "sh",
            "-c",
            "echo host-net > /www/index.html; exec httpd -f -p 18081 -h /www",
        ],
        |_| {},
    )?;
    let ino = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(cx.node.netns_path()).map_err(|e| e.to_string())?,
    );
    expect_eq(
        "the container's network namespace vs the node's",
        sh_ok(cri, &id, "readlink /proc/self/ns/net")?,
        format!("net:[{ino}]"),
    )?;
    let got = fetch_from_node(cx, "http://127.0.0.1:18081/", long())?;
    expect_eq(
        "GET of the node's 127.0.0.1:18081",
        got.as_str(),
        "host-net",
    )?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    expect_eq(
        "hostname in a hostNetwork pod",
        sh_ok(cri, &id, "hostname")?,
        host.trim().to_string(),
    )
}

/// The files the kubelet projects: its own /etc/hosts, a read-only volume
/// (a configMap), an emptyDir and the termination log; containerd's
/// /etc/resolv.conf (from the pod's DNS config) and /etc/hostname.
fn projected_files(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let pod = cx.pod("proj", |c| {
        c.dns_config = Some(DnsConfig {
            servers: vec!["10.88.0.53".into()],
            searches: vec!["proj.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        })
    })?;
    let dir = cx.node.work.join("vol").join(format!("{}-proj", pod.id));
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    };
    let hosts = w(
        "etc-hosts",
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.88.0.99\tnk-service.example\n",
    );
    w("config/greeting", "hello-from-a-volume\n");
    let term = w("termination-log", "");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let m = |cp: &str, hp: &Path, ro: bool| Mount {
        container_path: cp.into(),
        host_path: hp.display().to_string(),
        readonly: ro,
        ..Default::default()
    };
    let id = pod.run("app", &["sleep", "3600"], |c| {
        c.mounts = vec![
            m("/etc/hosts", &hosts, false),
            m("/etc/config", &dir.join("config"), true),
            m("/data", &data, false),
            m("/dev/termination-log", &term, false),
        ]
    })?;
    let h = sh_ok(cri, &id, "cat /etc/hosts")?;
    expect(h.contains("nk-service.example"), || {
        format!("/etc/hosts: {h:?}")
    })?;
    let r = sh_ok(cri, &id, "cat /etc/resolv.conf")?;
    for want in [
        "nameserver 10.88.0.53",
        "search proj.svc.cluster.local svc.cluster.local",
        "options ndots:5",
    ] {
        expect(r.lines().any(|l| l.trim() == want), || {
            format!("/etc/resolv.conf lacks {want:?}: {r:?}")
        })?;
    }
    // (The hostname itself is the pod's UTS namespace's: shared_net_ipc.)
    let name = pod.config.hostname.clone();
    expect_eq("/etc/hostname", sh_ok(cri, &id, "cat /etc/hostname")?, name)?;
    expect_eq(
        "the configMap volume",
        sh_ok(cri, &id, "cat /etc/config/greeting")?.as_str(),
        "hello-from-a-volume",
    )?;
    let (code, _, err) = sh(cri, &id, "touch /etc/config/x")?;
    expect(code != 0 && err.contains("Read-only"), || {
        format!("write to the read-only volume: exit {code} {err:?}")
    })?;
    sh_ok(
        cri,
        &id,
        "echo from-the-pod > /data/out && echo bye > /dev/termination-log",
    )?;
    expect_eq(
        "emptyDir file on the node",
        std::fs::read_to_string(data.join("out"))
            .unwrap_or_default()
            .as_str(),
        "from-the-pod\n",
    )?;
    expect_eq(
        "termination log on the node",
        std::fs::read_to_string(&term).unwrap_or_default().as_str(),
        "bye\n",
    )?;
    let st = cri.container_status(&id)?;
    let paths: Vec<&str> = st
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    for want in ["/etc/hosts", "/etc/config", "/data", "/dev/termination-log"] {
        expect(paths.contains(&want), || {
            format!("ContainerStatus mounts lack {want}: {paths:?}")
        })?;
    }
    Ok(())
}

/// Many pods started at once (one thread each, as the kubelet's pod
/// workers do), all running; then all torn down at once, and nothing left.
fn many_pods(cx: &Ctx) -> R<()> {
    let cri = cx.cri();
    let n = many_pods_count(cx.handler);
    let started: Vec<R<Pod>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    let pod = cx.pod("many", |_| {})?;
                    pod.run("app", &["sleep", "3600"], |_| {})?;
                    Ok(pod)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a pod thread panicked".into()))
            })
            .collect()
    });
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    for p in started {
        match p {
            Ok(p) => pods.push(p),
            Err(e) => errors.push(e),
        }
    }
    let running = cri
        .list_containers(None)?
        .iter()
        .filter(|c| c.state == ContainerState::ContainerRunning as i32)
        .count();
    let ready = cri
        .list_pods()?
        .iter()
        .filter(|p| p.state == PodSandboxState::SandboxReady as i32)
        .count();
    let teardown: Vec<R<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .into_iter()
            .map(|mut p| s.spawn(move || p.teardown()))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a teardown thread panicked".into()))
            })
            .collect()
    });
    errors.extend(teardown.into_iter().filter_map(Result::err));
    expect(errors.is_empty(), || {
        format!("{} failures: {}", errors.len(), errors.join("; "))
    })?;
    expect(running == n && ready == n, || {
        format!("{n} pods started, but {ready} pods ready and {running} containers running")
    })?;
    nothing_left(cx)
}

/// After a handler's pods are gone: no pod, container, shim, process,
/// mount, cgroup, netns, runtime state, IP lease or veth left (waiting a
/// little: shims exit after RemovePodSandbox returns).
pub fn nothing_left(cx: &Ctx) -> R<()> {
    let mut left = Vec::new();
    if wait_until(long(), || {
        left = cx.node.leftovers();
        left.is_empty()
    }) {
        Ok(())
    } else {
        Err(format!("left behind: {}", left.join("; ")))
    }
}
